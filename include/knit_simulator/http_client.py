"""A minimal HTTP/1.1 client on asyncio streams: one keep-alive connection per delivery worker.

Why not aiohttp: a delivery is one small POST and a status code, and the general client spends
several times more CPU per request than the simulator spends building the event. This speaks
just enough HTTP/1.1 (Content-Length, chunked, Connection: close) and reports the status.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024


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
    """One persistent connection to a target, reopened whenever it breaks or the server closes it."""

    def __init__(self, target: Target, timeout: float) -> None:
        self._target = target
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, head: bytes, body: bytes, *, slow: float = 0.0, drop: bool = False) -> int:
        """Send one request and return the answer's status code.

        ``slow`` pauses between the headers and the body; ``drop`` sends half the body and closes
        the connection (then raises ``DeliveryError``), as a network failure would.
        """
        try:
            async with asyncio.timeout(self._timeout + slow):
                return await self._exchange(head, body, slow, drop)
        except (DeliveryError, OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ValueError, IndexError) as exc:
            self.close()
            if isinstance(exc, DeliveryError):
                raise
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, head: bytes, body: bytes, slow: float, drop: bool) -> int:
        if self._writer is None or self._writer.is_closing():
            await self._open()
        reader, writer = self._reader, self._writer
        assert reader is not None
        assert writer is not None
        if drop:
            writer.write(head + body[: len(body) // 2])
            await writer.drain()
            self.close()
            raise DeliveryError("connection dropped by the simulator (fault injection)")
        if slow:
            writer.write(head)
            await writer.drain()
            await asyncio.sleep(slow)
            writer.write(body)
        else:
            writer.write(head + body)
        await writer.drain()
        while True:
            status, length, chunked, close = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            if status >= 200:
                break
        if chunked:
            await _skip_chunked(reader)
        elif length is not None:
            await reader.readexactly(length)
        elif status not in (204, 304):
            await reader.read()  # body delimited by the end of the connection
            close = True
        if close:
            self.close()
        return status

    async def _open(self) -> None:
        context = ssl.create_default_context() if self._target.scheme == "https" else None
        self._reader, self._writer = await asyncio.open_connection(
            self._target.host, self._target.port, ssl=context, limit=MAX_HEAD_BYTES
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


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


async def _skip_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return
        await reader.readexactly(size + 2)
