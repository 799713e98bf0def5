"""HTTP/1.1 over bare sockets, for what an HTTP client library will not send: floods, trickles, pipelines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

Reader = asyncio.StreamReader
MiB = 1024 * 1024


async def read_response(reader: Reader, timeout: float = 20) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout)
    return int(status_line.split()[1]), headers, body


async def closed(reader: Reader, timeout: float = 20) -> bool:
    """Whether the server ends the connection (EOF or reset) within ``timeout`` with nothing more to read."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except ConnectionResetError:
        return True


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: test", *extra]) + "\r\n\r\n").encode()


@dataclass
class Cut:
    """How a hostile request ended: the answer (``None`` if reset first), bytes sent, seconds to the cut."""

    status: int | None
    body: bytes
    sent: int
    seconds: float
    peak_rss_growth: int  # the receiver's resident memory at its highest during the request, minus before


def _rss(pid: int | None) -> int:
    return psutil.Process(pid).memory_info().rss if pid is not None else 0


async def _finish(reader: Reader, answer: asyncio.Future[bytes], started: float) -> tuple[int | None, bytes, float]:
    """Read the answer to its end; the cut is when the server's EOF (or reset) arrives."""
    data = b""
    try:
        data = await asyncio.wait_for(answer, 20)
        while chunk := await asyncio.wait_for(reader.read(65536), 20):
            data += chunk
    except (ConnectionResetError, asyncio.IncompleteReadError):
        pass
    seconds = time.monotonic() - started
    if not data.startswith(b"HTTP/1.1 "):
        return None, b"", seconds
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, seconds


async def flood(port: int, prefix: bytes, filler: bytes, pid: int | None = None, most: int = 64 * MiB) -> Cut:
    """Send ``prefix`` then ``filler`` again and again (up to ``most`` bytes) until the server answers or cuts."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    before = peak = _rss(pid)
    started = time.monotonic()
    answer = asyncio.ensure_future(reader.read(65536))
    block = filler * max(1, 65536 // len(filler))
    sent = 0
    try:
        writer.write(prefix)
        sent = len(prefix)
        while sent < most and not answer.done():
            writer.write(block)
            await writer.drain()
            await asyncio.sleep(0)  # drain() does not yield without backpressure: let the answer in
            sent += len(block)
            if sent % (16 * len(block)) < len(block):  # about every MiB: reading /proc costs more than a block
                peak = max(peak, _rss(pid))
    except (ConnectionResetError, BrokenPipeError):
        pass
    status, body, seconds = await _finish(reader, answer, started)
    peak = max(peak, _rss(pid))
    writer.close()
    return Cut(status, body, sent, seconds, peak - before)


async def trickle(port: int, prefix: bytes, data: bytes, interval: float, pid: int | None = None) -> Cut:
    """Send ``prefix``, then ``data`` one byte every ``interval`` seconds (its last byte again and again
    once it is all sent), until the server answers or cuts; time counts from the first byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    before = _rss(pid)
    started = time.monotonic()
    answer = asyncio.ensure_future(reader.read(65536))
    sent = 0
    try:
        writer.write(prefix)
        while not answer.done() and time.monotonic() - started < 30:
            writer.write(data[min(sent, len(data) - 1) :][:1])
            await writer.drain()
            sent += 1
            await asyncio.wait((answer,), timeout=interval)
    except (ConnectionResetError, BrokenPipeError):
        pass
    status, body, seconds = await _finish(reader, answer, started)
    growth = _rss(pid) - before
    writer.close()
    return Cut(status, body, len(prefix) + sent, seconds, growth)


async def concurrent(port: int, request: bytes, count: int) -> list[int]:
    """``count`` connections at once, each sending ``request``; the status of each answer."""

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            return (await read_response(reader))[0]
        finally:
            writer.close()

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def pipelined(port: int, request: bytes, count: int) -> list[int]:
    """``count`` copies of ``request`` in one write on one connection; the statuses, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request * count)
        return [(await read_response(reader))[0] for _ in range(count)]
    finally:
        writer.close()


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` on the running loop (whose server must keep serving) until true, else fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
