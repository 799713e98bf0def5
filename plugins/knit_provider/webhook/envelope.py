"""Parse and check a webhook body before it is queued: what the landing store can take, or why not.

Postgres is stricter than Python's JSON: ``jsonb`` and ``text`` refuse the NUL character, and
the unique and run indexes refuse very long keys. Catching those here sets the one bad body aside
(a dead letter when signed, else 400) instead of failing a whole batch of good ones.

The ``X-Knit-Integration-Id`` header is not signed: where the signed body names an integration
(``eventData.integrationId``), the body decides whose event it is, and a header that disagrees
sets the body aside the same way.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

# Ids are index keys: a btree entry must stay well under Postgres's ~2.7 kB limit.
MAX_ID_CHARS = 512


class EnvelopeError(ValueError):
    """The body cannot be landed as an event; ``str(error)`` is the reason kept with the dead letter."""


class Event:
    """One parsed event, ready for ``land_events``; ``payload`` is the body as text (the JSONB).

    ``execution_id`` is Knit's ``X-Knit-Execution-Id`` header, kept because Knit's support asks for it.
    """

    __slots__ = (
        "event_id",
        "event_type",
        "execution_id",
        "integration_id",
        "payload",
        "record_id",
        "sync_data_type",
        "sync_job_id",
        "sync_run_id",
        "sync_type",
    )

    def __init__(
        self, fields: list[str | None], integration_id: str | None, payload: str, execution_id: str | None = None
    ) -> None:
        (
            self.event_id,
            self.event_type,
            self.sync_type,
            self.sync_data_type,
            self.sync_job_id,
            self.sync_run_id,
            self.record_id,
        ) = fields
        self.integration_id = integration_id
        self.payload = payload
        self.execution_id = execution_id


def parse_json(body: bytes) -> Any:
    """Return the parsed body, or raise :class:`EnvelopeError` saying why it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"body is not valid JSON ({exc})") from None


def _has_nul(document: Any) -> bool:
    # Iterative: a document may nest up to orjson's 1024 levels, deeper than Python's recursion limit.
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            if any("\x00" in key for key in value):
                return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _text(key: str, value: Any) -> str | None:
    if value is None or (value.__class__ is str and len(value) <= MAX_ID_CHARS):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise EnvelopeError(f"{key} must be a string, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_ID_CHARS:
        raise EnvelopeError(f"{key} is longer than {MAX_ID_CHARS} characters")
    return text


class _Data(msgspec.Struct):
    """The one field of ``eventData`` the envelope reads: the integration the signed body names, if any."""

    integrationId: Any = None


class _Ids(msgspec.Struct):
    """The envelope's ids: decoding into this checks the whole body is JSON but builds nothing else.

    ``eventData`` other than an object or null (rare: a poison body) fails the decode and takes the full parse.
    """

    eventId: Any = None
    eventType: Any = None
    syncType: Any = None
    syncDataType: Any = None
    syncJobId: Any = None
    syncRunId: Any = None
    recordId: Any = None
    eventData: _Data | None = None


_IDS = msgspec.json.Decoder(_Ids)
_ID_FIELDS: tuple[str, ...] = _Ids.__struct_fields__[:7]  # the order of Event's first seven fields


def read_event(body: bytes, integration_id: str | None, execution_id: str | None = None) -> Event:
    """Parse a body and return the :class:`Event` to land, or raise :class:`EnvelopeError` saying why not.

    A Knit body is a few kB of which only the ids are needed: they are decoded alone (checking that
    the rest is JSON), several times cheaper than building the whole document. Anything unusual (a
    ``\\u0000`` escape, not an object, invalid UTF-8, a number out of range, nesting deeper than
    msgspec's ~1,000 levels, which it reports as ``RecursionError``) takes the full parse, which
    gives the exact reason.
    """
    if b"\\u0000" not in body:
        try:
            ids = _IDS.decode(body)
            payload = body.decode("utf-8")
        except Exception:  # whatever the fast decoder refuses, the full parse below explains (or accepts)
            pass
        else:
            named = ids.eventData.integrationId if ids.eventData is not None else None
            fields = _checked_ids(msgspec.structs.astuple(ids)[:7])
            return _event(fields, _integration(named, integration_id), payload, execution_id)
    return to_event(body, parse_json(body), integration_id, execution_id)


def to_event(body: bytes, document: Any, integration_id: str | None, execution_id: str | None = None) -> Event:
    """Check the envelope of a parsed body and return the :class:`Event` to land.

    :raises EnvelopeError: not an object, ``eventId``/``eventType`` missing or empty, an id that is
        not a string or too long, a NUL character anywhere (Postgres refuses it), a header id that is
        not clean text, or an ``X-Knit-Integration-Id`` other than the ``eventData.integrationId``.
    """
    if not isinstance(document, dict):
        raise EnvelopeError(f"body must be a JSON object, got {type(document).__name__}")
    fields = _checked_ids(tuple(map(document.get, _ID_FIELDS)))
    # Only a body that spells the escape can hold a NUL (a raw NUL byte is not valid JSON).
    if b"\\u0000" in body and _has_nul(document):
        raise EnvelopeError("body contains a NUL character (\\u0000), which Postgres cannot store")
    data = document.get("eventData")
    named = data.get("integrationId") if isinstance(data, dict) else None
    return _event(fields, _integration(named, integration_id), body.decode("utf-8"), execution_id)


def _checked_ids(values: tuple[Any, ...]) -> list[str | None]:
    fields: list[str | None] = list(values)
    for value in values:  # Knit's ids are short strings: anything else is converted or refused, slowly
        if value is not None and (value.__class__ is not str or len(value) > MAX_ID_CHARS):
            fields = [_text(key, value) for key, value in zip(_ID_FIELDS, values, strict=True)]
            break
    if not fields[0]:
        raise EnvelopeError("eventId is missing or empty")
    if not fields[1]:
        raise EnvelopeError("eventType is missing or empty")
    return fields


def _event(fields: list[str | None], integration_id: str | None, payload: str, execution_id: str | None) -> Event:
    _check_header("X-Knit-Execution-Id", execution_id)
    return Event(fields, integration_id, payload, execution_id)


def _integration(named: Any, header: str | None) -> str | None:
    """The event's integration: the one the signed body names (``eventData.integrationId``), else the header's.

    The body names one when that value is an id the store could index (as ``envelope_id`` reads it in SQL).
    """
    _check_header("X-Knit-Integration-Id", header)
    body_id = _usable_id(named)
    if body_id is None:
        return header
    if header is not None and header != body_id:
        raise EnvelopeError(
            f"X-Knit-Integration-Id {header!r} does not match the body's eventData.integrationId {body_id!r}"
        )
    return body_id


_CONTROLS = r"\x00-\x1f\x7f-\x9f"  # C0, DEL and C1
# Front ends decode header ids as UTF-8 with ``surrogateescape``: a lone surrogate is a byte that was not UTF-8.
_NOT_CLEAN_TEXT = re.compile(rf"[{_CONTROLS}\ud800-\udfff]")


def clean_header(value: str | None) -> str | None:
    """``value`` if it is an id the store can keep as text (UTF-8, no control character, not too long), else None."""
    return value if value is not None and len(value) <= MAX_ID_CHARS and not _NOT_CLEAN_TEXT.search(value) else None


def _check_header(name: str, value: str | None) -> None:
    if value is not None and clean_header(value) is None:
        if len(value) > MAX_ID_CHARS:
            raise EnvelopeError(f"{name} is longer than {MAX_ID_CHARS} characters")
        raise EnvelopeError(f"{name} is not valid UTF-8 or holds a control character: {value!a}")


# ``"key": "value"`` for the envelope's ids, found in a body that does not parse (e.g. truncated).
_ID_PAIR = re.compile(rb'"(eventId|eventType|syncJobId|syncRunId)"\s*:\s*("(?:[^"\\]|\\.){1,%d}")' % MAX_ID_CHARS)
_DEAD_LETTER_IDS = ("eventId", "eventType", "syncJobId", "syncRunId")


def _usable_id(value: Any) -> str | None:
    """An id worth storing with a dead letter: a non-empty string (or number) that fits the index, else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if 0 < len(text) <= MAX_ID_CHARS and "\x00" not in text else None


def read_ids(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """Best effort: ``(eventId, eventType, syncJobId, syncRunId)`` of a body that cannot be landed.

    A dead letter carries them so that it is counted against its run. A JSON object gives its
    top-level values; a body that does not parse (truncated) gives the first complete
    ``"key": "string"`` pair of each key found in it. ``''`` and anything unusable are ``None``.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        found: dict[str, Any] = {}
        for match in _ID_PAIR.finditer(body):
            key = match.group(1).decode()
            if key not in found:
                try:
                    found[key] = orjson.loads(match.group(2))
                except orjson.JSONDecodeError:  # an invalid escape or invalid UTF-8 in the value
                    continue
        document = found
    if not isinstance(document, dict):
        return None, None, None, None
    event_id, event_type, job_id, run_id = (_usable_id(document.get(key)) for key in _DEAD_LETTER_IDS)
    return event_id, event_type, job_id, run_id


# Headers that may carry credentials never reach the dead-letter table.
_SECRET_HEADER_WORDS = ("authorization", "cookie", "secret", "token", "password", "api-key", "apikey")


_CONTROL = re.compile(f"[{_CONTROLS}]")


def _readable(raw: bytes) -> str:
    """A header as UTF-8 text; bytes that are not UTF-8, and control characters (jsonb refuses NUL), as ``\\xNN``."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", raw.decode("utf-8", "backslashreplace"))


def safe_headers(raw_headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Return the request headers as a dict for the dead letter, without any that may hold a secret."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = _readable(raw_name).lower()
        if any(word in name for word in _SECRET_HEADER_WORDS):
            continue
        value = _readable(raw_value)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class DeadLetter:
    """A signed body kept byte for byte because it could not be landed, with the reason and its readable ids."""

    __slots__ = ("body", "event_id", "event_type", "headers", "integration_id", "reason", "sync_job_id", "sync_run_id")

    def __init__(
        self,
        body: bytes,
        headers: dict[str, str],
        reason: str,
        integration_id: str | None,
        ids: tuple[str | None, str | None, str | None, str | None] | None = None,
    ) -> None:
        self.body = body
        self.headers = headers
        self.reason = reason
        self.integration_id = integration_id
        self.event_id, self.event_type, self.sync_job_id, self.sync_run_id = ids if ids is not None else read_ids(body)
