"""What the receiver answers: one set of decisions shared by both HTTP front ends.

The ASGI app (mounted in Airflow's API server) and the raw HTTP server (standalone) only move
bytes: they call :func:`route`, :func:`check_headers`, :func:`too_large`, :func:`decide` and
:func:`outcome` and send what these return, so every answer is the same whichever serves it.
:func:`decide` is synchronous up to the group commit and returns a :class:`Pending` to wait for,
so the raw server needs no task per request: it answers from the future's callback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

import orjson

from knit_provider.webhook.envelope import (
    DeadLetter,
    EnvelopeError,
    Event,
    clean_header,
    read_event,
    safe_headers,
    to_event,
)
from knit_provider.webhook.signature import SIGNATURE_HEADER, Compact, verify, verify_compact
from knit_provider.webhook.writer import GroupCommitWriter, Refused, Unavailable

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]  # lower-case names, raw values, in arrival order

WEBHOOK_PATH = "/webhook"
HEALTH_PATH = "/health"  # readiness, as before the two probes below existed
READY_PATH = "/health/ready"
LIVE_PATH = "/health/live"
DEFAULT_RETRY_AFTER_SECONDS = 5

_INTEGRATION_HEADER = b"x-knit-integration-id"
_EXECUTION_HEADER = b"x-knit-execution-id"
_CONTENT_LENGTH = b"content-length"


class Answer(NamedTuple):
    """A complete response: status, JSON body and extra headers (content type and length are implied)."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_answer(status: int, payload: dict[str, Any], *headers: tuple[bytes, bytes]) -> Answer:
    return Answer(status, orjson.dumps(payload), headers)


OK = Answer(200, b'{"status":"ok"}')
NOT_READY = Answer(503, b'{"status":"unavailable"}')
NOT_FOUND = json_answer(404, {"detail": "Not Found"})
_FORGED = json_answer(401, {"error": "X-Knit-Signature does not match the body"})
WEBHOOK = "webhook"
HEALTH = "health"
LIVE = "live"
_PROBE = {"GET", "HEAD"}
_ALLOWED = {
    WEBHOOK_PATH: (WEBHOOK, {"POST"}),
    HEALTH_PATH: (HEALTH, _PROBE),
    READY_PATH: (HEALTH, _PROBE),
    LIVE_PATH: (LIVE, _PROBE),
}


def route(method: str, path: str) -> str | Answer:
    """Return ``WEBHOOK``, ``HEALTH`` (readiness) or ``LIVE`` for a request to serve, else its 404 or 405 answer."""
    target = _ALLOWED.get(path)
    if target is None:
        return NOT_FOUND
    name, methods = target
    if method in methods:
        return name
    return json_answer(405, {"detail": "Method Not Allowed"}, (b"allow", ", ".join(sorted(methods)).encode()))


def unavailable(message: str, writer: GroupCommitWriter | None) -> Answer:
    """503 with ``Retry-After``: nothing was stored and Knit should send the event again later."""
    retry_after = writer.settings.retry_after_seconds if writer is not None else DEFAULT_RETRY_AFTER_SECONDS
    return json_answer(503, {"error": f"{message}; retry later"}, (b"retry-after", str(retry_after).encode()))


def too_large(limit: int) -> Answer:
    """413; the connection is closed after it, since the rest of the body is not read."""
    return json_answer(413, {"error": f"body larger than {limit} bytes"}, (b"connection", b"close"))


def closing(status: int, message: str) -> Answer:
    """An answer after which the connection is closed because the rest of the request is not read (408, 414, 431)."""
    return json_answer(status, {"error": message}, (b"connection", b"close"))


class Head(NamedTuple):
    """What the headers of an acceptable request say."""

    signature: bytes | None
    integration_id: str | None
    execution_id: str | None = None  # X-Knit-Execution-Id, stored with the event
    length: int | None = None  # Content-Length; None when absent (chunked, or no body)


def check_headers(headers: Headers, limit: int) -> Head | Answer:
    """Read the headers the receiver uses; answer 400 or 413 now when ``Content-Length`` rules the body out."""
    signature: bytes | None = None
    integration_id: str | None = None
    execution_id: str | None = None
    length: int | None = None
    for name, value in headers:
        if name == _CONTENT_LENGTH:
            if not value.isdigit():
                return json_answer(400, {"error": "Content-Length is not a number"})
            length = int(value)
            if length > limit:
                return too_large(limit)
        elif name == SIGNATURE_HEADER:
            signature = value
        elif name == _INTEGRATION_HEADER:
            integration_id = _header_id(value)
        elif name == _EXECUTION_HEADER:
            execution_id = _header_id(value)
    return Head(signature, integration_id, execution_id, length)


def _header_id(value: bytes) -> str:
    # UTF-8, as Knit's ids are text; a byte that is not UTF-8 becomes a lone surrogate, for which the
    # envelope refuses the body (a dead letter when signed, else 400) instead of storing it garbled.
    return value.decode("utf-8", "surrogateescape")


class Pending:
    """A request waiting for its commit: ``future`` resolves then; :func:`outcome` gives the answer."""

    __slots__ = ("future", "success", "writer")

    def __init__(self, future: asyncio.Future[str | None], success: Answer, writer: GroupCommitWriter) -> None:
        self.future = future
        self.success = success
        self.writer = writer


def dead_lettered(reason: str) -> Answer:
    """200 for an authentic body kept as a dead letter: Knit's retries could not change it."""
    return json_answer(200, {"status": "dead_letter", "reason": reason})


def decide(
    writer: GroupCommitWriter, head: Head, headers: Headers, body: bytes | list[bytes], raw_signed: bool | None = None
) -> Answer | Pending:
    """Verify, parse and check a whole body, and queue it: the answer now, or the commit to wait for.

    Signed mode never bounces an authentic body: 200 after the commit, for an event, or for a
    body that is not a usable event (kept as a dead letter, deduplicated by body). 401 for a
    missing or wrong signature (nothing stored). Unsigned mode answers 400 for an unusable body
    (nothing authentic to keep). 503 when it cannot be queued. Never raises for anything a client sends.

    :param body: the body, or its pieces in order: they are joined only when the body is to be read
        (never for a forgery over the compact form's size limit).
    :param raw_signed: whether the signature matches the raw bytes, when the front end hashed them as
        they arrived (:class:`~knit_provider.webhook.signature.Signer`); ``None``: checked here.
    """
    secret = writer.settings.secret
    compact = None
    if secret is not None:
        if not head.signature:
            return json_answer(401, {"error": "missing X-Knit-Signature header"})
        if raw_signed is None:
            body = _whole(body)
            raw_signed = verify(body, head.signature, secret)
        if not raw_signed:
            limit = writer.settings.compact_signature_max_bytes
            if not isinstance(body, bytes) and sum(len(piece) for piece in body) > limit:
                return _FORGED  # the compact form is not tried for it: its pieces need not be joined
            compact = verify_compact(_whole(body), head.signature, secret, limit)
            if compact is None:
                return _FORGED
    # Only the compact form is kept when only it verifies: it is what the signature covers.
    body = _whole(body) if compact is None else compact.body
    try:
        event = _parse(body, head, compact)
    except EnvelopeError as exc:
        if secret is None:
            return json_answer(400, {"error": str(exc)})
        letter = DeadLetter(body, safe_headers(headers), str(exc), clean_header(head.integration_id))
        try:
            return Pending(writer.submit_dead_letter(letter), dead_lettered(str(exc)), writer)
        except Unavailable as unavailable_exc:
            return unavailable(str(unavailable_exc), writer)
    try:
        return Pending(writer.submit_event(event, secret is not None, headers), OK, writer)
    except Unavailable as exc:
        return unavailable(str(exc), writer)


def _parse(body: bytes, head: Head, compact: Compact | None) -> Event:
    """The event of a body, or :class:`EnvelopeError`, whatever the body holds.

    The parsers raise only ``EnvelopeError`` for the bodies we know of; anything else (a decoder's
    limit nobody foresaw) would otherwise be answered 503 at every retry, for ever: it is a reason too.
    """
    try:
        if compact is None:
            return read_event(body, head.integration_id, head.execution_id)
        return to_event(body, compact.document, head.integration_id, head.execution_id)
    except EnvelopeError:
        raise
    except Exception as exc:
        log.warning("Could not parse a body (%s: %s)", type(exc).__name__, exc, exc_info=True)
        raise EnvelopeError(f"the body could not be parsed ({type(exc).__name__}: {exc})") from exc


def _whole(body: bytes | list[bytes]) -> bytes:
    if isinstance(body, bytes):
        return body
    return body[0] if len(body) == 1 else b"".join(body)


def outcome(pending: Pending) -> Answer:
    """The answer of a request whose future is done: its success answer (or, for an event the database
    refused and that was kept as a dead letter, :func:`dead_lettered`), 400 if refused unsigned, else 503."""
    future = pending.future
    if future.cancelled():
        return unavailable("the request was not completed", pending.writer)
    exc = future.exception()
    if exc is None:
        reason = future.result()
        return pending.success if reason is None else dead_lettered(reason)
    if isinstance(exc, Refused):
        return json_answer(400, {"error": str(exc)})
    return unavailable(str(exc) if isinstance(exc, Unavailable) else "the request was not completed", pending.writer)


async def answer(
    writer: GroupCommitWriter, head: Head, headers: Headers, body: bytes | list[bytes], raw_signed: bool | None = None
) -> Answer:
    """:func:`decide`, then wait for the commit: for front ends that give each request a task."""
    decided = decide(writer, head, headers, body, raw_signed)
    if isinstance(decided, Answer):
        return decided
    # Not ``await future``: a request task cancelled (client gone) must not cancel the queued item.
    await asyncio.wait((decided.future,))
    return outcome(decided)


async def health(writer: GroupCommitWriter) -> Answer:
    """Readiness: 200 while the database answers and a writer is connected, else 503; a status only.

    The probes answer anyone who can reach them, so they tell nothing else: whether signatures are
    verified, the writers connected and the queue depth are metrics, on a listener of their own
    (:mod:`knit_provider.webhook.stats`). Liveness (``LIVE``) needs no call: the process answering
    is the whole answer (``OK``).
    """
    ready = await writer.ping() and writer.connected_writers > 0
    return OK if ready else NOT_READY
