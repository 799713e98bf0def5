"""A minimal HTTP/1.1 client on a bare asyncio Protocol: one keep-alive connection per delivery worker.

Why not aiohttp: a delivery is one small POST and a status code, and the general client spends
several times more CPU per request than the simulator spends building the event. This speaks
just enough HTTP/1.1 (Content-Length, chunked, Connection: close) and reports the status.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
# A receiver answers with the same few heads over and over; parsing one costs more than a lookup.
KNOWN_HEADS_LIMIT = 256
_known_heads: dict[bytes, tuple[int, int | None, bool, bool]] = {}


class DeliveryError(Exception):
    """The request got no HTTP answer: refused, reset, timed out, or the answer was not HTTP."""


@dataclass(frozen=True)
class Target:
    """Where a job's webhooks go."""

    scheme: str
    host: str
    port: int
    path: str
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Target:
        """Split a destination URL, refusing anything that is not an absolute http(s) URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"destination {url!r} is not an absolute http:// or https:// URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(parts.scheme, parts.hostname, port, path, parts.netloc.rpartition("@")[2])

    def request_prefix(self, integration_id: str) -> bytes:
        """The header lines every delivery of a job shares."""
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            "Content-Type: application/json\r\nUser-Agent: knit-simulator/1.0\r\n"
            f"X-Knit-Integration-Id: {integration_id}\r\n"
        ).encode("latin-1")


class Connection:
    """One persistent connection to a target, reopened whenever it breaks or the server closes it.

    Built on a bare ``asyncio.Protocol``: one write and one callback per request, no stream
    buffers or per-read futures, which roughly halves the simulator's CPU per delivery. The
    request timeout is a per-connection watchdog rather than an ``asyncio.timeout`` per request:
    a timer handle per request costs about a tenth of the simulator's CPU per delivery.
    """

    def __init__(self, target: Target, timeout: float) -> None:
        self._target = target
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._protocol: _ResponseReader | None = None

    async def post(self, head: bytes, body: bytes, *, slow: float = 0.0, drop: bool = False) -> int:
        """Send one request and return the answer's status code.

        ``slow`` pauses between the headers and the body; ``drop`` sends half the body and closes
        the connection (then raises ``DeliveryError``), as a network failure would.
        """
        protocol = self._protocol
        try:
            if protocol is None or protocol.closed or slow or drop:
                async with asyncio.timeout(self._timeout + slow):
                    return await self._exchange(head, body, slow, drop)
            # The common case: an open connection, whose watchdog enforces the timeout.
            status, close = await protocol.send(head + body)
        except (DeliveryError, OSError, TimeoutError, ValueError, IndexError) as exc:
            self.close()
            if isinstance(exc, DeliveryError):
                raise
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if close:
            self.close()
        return status

    async def _exchange(self, head: bytes, body: bytes, slow: float, drop: bool) -> int:
        if self._protocol is None or self._protocol.closed:
            await self._open()
        protocol = self._protocol
        assert protocol is not None
        if drop:
            protocol.write(head + body[: len(body) // 2])
            self.close()
            raise DeliveryError("connection dropped by the simulator (fault injection)")
        if slow:
            answer = protocol.expect(grace=slow)
            protocol.write(head)
            await asyncio.sleep(slow)
            protocol.write(body)
        else:
            answer = protocol.send(head + body)
        status, close = await answer
        if close:
            self.close()
        return status

    async def _open(self) -> None:
        self.close()
        context = ssl.create_default_context() if self._target.scheme == "https" else None
        loop = asyncio.get_running_loop()
        timeout = self._timeout
        self._transport, self._protocol = await loop.create_connection(
            lambda: _ResponseReader(timeout), self._target.host, self._target.port, ssl=context
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = self._protocol = None


class _ResponseReader(asyncio.Protocol):
    """Parses one response at a time; ``expect()`` returns a future of (status, close after?).

    A watchdog timer, re-armed at most once per ``timeout``, fails a request that has waited
    ``timeout`` seconds for its answer (and aborts the connection).
    """

    def __init__(self, timeout: float) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bool]] | None = None
        self._head: tuple[int, int | None, bool, bool] | None = None
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._deadline = 0.0
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio subclasses
        self._watchdog = self._loop.call_later(self._timeout, self._check)

    def expect(self, grace: float = 0.0) -> asyncio.Future[tuple[int, bool]]:
        """Get ready for the next answer, due within the timeout (plus ``grace``) from now."""
        self._waiter = waiter = self._loop.create_future()
        self._buffer.clear()
        self._head = None
        self._deadline = self._loop.time() + self._timeout + grace
        return waiter

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bool]]:
        """Write a whole request; the future is its answer's (status, close after?)."""
        waiter = self.expect()
        assert self._transport is not None
        self._transport.write(request)
        return waiter

    def write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def _check(self) -> None:
        waiting = self._waiter is not None and not self._waiter.done()
        left = self._deadline - self._loop.time()
        if waiting and left <= 0:
            self._fail(DeliveryError(f"no answer within {self._timeout:g} s"))
            if self._transport is not None:
                self._transport.abort()
            return
        self._watchdog = self._loop.call_later(left if waiting else self._timeout, self._check)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            return
        try:
            self._parse()
        except (DeliveryError, ValueError, IndexError) as exc:
            self._fail(exc if isinstance(exc, DeliveryError) else DeliveryError(f"bad answer: {exc}"))

    def _parse(self) -> None:
        buffer = self._buffer
        while self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise DeliveryError("answer headers too large")
                return
            raw = bytes(buffer[: end + 4])
            head = _known_heads.get(raw)
            if head is None:
                head = _parse_head(raw)
                if len(_known_heads) >= KNOWN_HEADS_LIMIT:
                    _known_heads.clear()
                _known_heads[raw] = head
            del buffer[: end + 4]
            if head[0] >= 200:  # skip 1xx interim answers
                self._head = head
        status, length, chunked, close = self._head
        if chunked:
            if _chunked_complete(buffer):
                self._finish(status, close)
        elif length is not None:
            if len(buffer) >= length:
                self._finish(status, close)
        elif status in (204, 304):
            self._finish(status, close)
        # else: the body ends with the connection (connection_lost finishes)

    def _finish(self, status: int, close: bool) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((status, close))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._head is not None and self._head[1] is None and not self._head[2]:
            self._finish(self._head[0], True)  # body delimited by the end of the connection
        self._fail(DeliveryError(f"connection closed before a complete answer ({exc or 'EOF'})"))


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """Status, Content-Length, chunked?, close after? from a response head."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/"):
        raise DeliveryError(f"answer is not HTTP: {lines[0][:80]!r}")
    status = int(rest[:3])
    length: int | None = None
    chunked = False
    close = version == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            close = token == b"close" or (close and token != b"keep-alive")
    return status, length, chunked, close


def _chunked_complete(buffer: bytearray) -> bool:
    """Whether a whole chunked body (through its last chunk and trailers) is in ``buffer``."""
    position = 0
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return False
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        position = line_end + 2
        if size == 0:
            return buffer.find(b"\r\n\r\n", position - 2) >= 0
        position += size + 2
        if position > len(buffer):
            return False
