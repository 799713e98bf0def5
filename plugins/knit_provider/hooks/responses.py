"""Read Knit's answers and turn every way they can go wrong into a clear, typed, secret-free error.

Knit answers ``{"success": true, "data": {...}}`` or ``{"success": false, "error": {"msg": ...}}``;
these helpers are what :meth:`KnitHook._request` uses to decide between "here is the data" and
which error to raise, so that decision lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import requests

from knit_provider.exceptions import (
    KnitAuthError,
    KnitConfigurationError,
    KnitRequestError,
    KnitResponseError,
)
from knit_provider.redaction import Redactor
from knit_provider.settings import DEFAULT_KNIT_HOST

EXECUTION_ID_HEADER = "X-Knit-Execution-Id"
_SNIPPET = 200


@dataclass(frozen=True)
class Failure:
    """One failed attempt that may succeed if tried again."""

    reason: str
    cause: BaseException | None = None
    status_code: int | None = None
    knit_message: str | None = None
    execution_id: str | None = None
    retry_after: float | None = None
    # True when Knit certainly did not act on the request (it was never sent, or a 429 refused it):
    # resending cannot start anything twice. False means the outcome is unknown.
    not_applied: bool = False


def base_url(host: str | None, schema: str | None, port: int | None, conn_id: str) -> str:
    """Build the API base URL from a connection: default host, HTTPS unless the host says otherwise."""
    url = (host or DEFAULT_KNIT_HOST).strip().rstrip("/")
    if "://" not in url:
        url = f"{schema or 'https'}://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KnitConfigurationError(
            f"Connection {conn_id!r} has host {host!r}, which is not an http(s) URL: use e.g. "
            f"{DEFAULT_KNIT_HOST} or http://127.0.0.1:8765."
        )
    if port and parts.port is None:
        url = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}"
    return url


def require_text(value: object, name: str) -> str:
    """Reject a missing or blank argument before anything is sent."""
    if not isinstance(value, str) or not value.strip():
        raise KnitConfigurationError(f"{name} is required and must be a non-empty string, got {value!r}.")
    return value


def execution_suffix(execution_id: str | None) -> str:
    """The ``[X-Knit-Execution-Id: ...]`` tail of an error, which Knit support asks for."""
    return f" [{EXECUTION_ID_HEADER}: {execution_id}]" if execution_id else ""


def required_id(data: dict[str, Any], key: str, endpoint: str, execution_id: str | None) -> str:
    """Return a string id Knit must have answered with, or fail saying what was there instead."""
    value = data.get(key)
    if isinstance(value, (str, int)) and str(value).strip():
        return str(value)
    raise KnitResponseError(
        f"Knit answered POST {endpoint} with success but without data.{key} (data keys: "
        f"{sorted(data) or 'none'}); without it the sync cannot be tracked."
        f"{execution_suffix(execution_id)}",
        endpoint=endpoint,
        execution_id=execution_id,
    )


def optional_id(data: dict[str, Any], key: str) -> str | None:
    """Return an id Knit may or may not send (``syncRunId`` is not documented)."""
    value = data.get(key)
    return str(value) if isinstance(value, (str, int)) and str(value).strip() else None


def _envelope(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _knit_message(envelope: dict[str, Any] | None) -> str | None:
    if envelope is None:
        return None
    error = envelope.get("error")
    if isinstance(error, dict) and error.get("msg") is not None:
        return str(error["msg"])
    if isinstance(error, str):
        return error
    return None


def _status_phrase(response: requests.Response) -> str:
    if response.reason:
        return str(response.reason)
    try:
        return HTTPStatus(response.status_code).phrase
    except ValueError:
        return "(unknown status)"


def _snippet(response: requests.Response, redact: Redactor) -> str:
    text = redact(response.text.strip().replace("\n", " "))
    return repr(text[:_SNIPPET] + ("…" if len(text) > _SNIPPET else ""))


def transient_failure(
    response: requests.Response, execution_id: str | None, redact: Redactor, retry_after: float | None
) -> Failure:
    """Describe a 429 or 5xx answer as a retryable :class:`Failure`.

    A 429 says the request was refused before anything acted on it (RFC 6585), whether Knit or a proxy in
    front of it answered; a 5xx leaves open whether Knit acted on it.
    """
    message = _knit_message(_envelope(response))
    message = redact(message) if message is not None else None
    said = f" (Knit said: {message})" if message else ""
    return Failure(
        reason=f"HTTP {response.status_code} {_status_phrase(response)}{said}",
        status_code=response.status_code,
        knit_message=message,
        execution_id=execution_id,
        retry_after=retry_after,
        not_applied=response.status_code == 429,
    )


def read_answer(
    response: requests.Response, endpoint: str, execution_id: str | None, conn_id: str, redact: Redactor
) -> dict[str, Any]:
    """Return ``data`` of a successful answer, or raise the error that fits a non-transient one."""
    status = response.status_code
    envelope = _envelope(response)
    message = _knit_message(envelope)
    message = redact(message) if message is not None else None
    fields: dict[str, Any] = {
        "status_code": status,
        "knit_message": message,
        "execution_id": execution_id,
        "endpoint": endpoint,
    }
    tail = execution_suffix(execution_id)
    said = message if message is not None else f"no Knit error message; body {_snippet(response, redact)}"
    if status in (401, 403):
        raise KnitAuthError(
            f"Knit rejected the API key of connection {conn_id!r} (HTTP {status}: {said}). Set the "
            f"connection's password to a valid Knit API key.{tail}",
            **fields,
        )
    if 300 <= status < 400:
        raise KnitRequestError(
            f"Knit POST {endpoint} was redirected (HTTP {status} to {response.headers.get('Location')!r}): "
            f"set the host of connection {conn_id!r} to Knit's API URL itself.{tail}",
            **fields,
        )
    if status >= 400:
        raise KnitRequestError(
            f"Knit refused POST {endpoint} (HTTP {status}: {said}). Fix the request or the connection; "
            f"retrying will not help.{tail}",
            **fields,
        )
    if envelope is None:
        raise KnitResponseError(
            f"Knit answered POST {endpoint} with HTTP {status} but the body is not a JSON object "
            f"(Content-Type {response.headers.get('Content-Type')!r}, body {_snippet(response, redact)}): "
            f"check that connection {conn_id!r} points at Knit's API.{tail}",
            **fields,
        )
    if envelope.get("success") is False:
        raise KnitRequestError(
            f"Knit refused POST {endpoint}: it answered HTTP {status} with success: false "
            f"({message or 'no error message'}).{tail}",
            **fields,
        )
    if envelope.get("success") is not True:
        raise KnitResponseError(
            f"Knit answered POST {endpoint} with HTTP {status} but not in Knit's envelope "
            f"(no 'success' flag; body {_snippet(response, redact)}).{tail}",
            **fields,
        )
    data = envelope.get("data")
    return data if isinstance(data, dict) else {}
