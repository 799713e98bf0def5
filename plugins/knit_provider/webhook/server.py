"""The standalone receiver's HTTP/1.1 server: an asyncio protocol on uvloop, parsing with httptools.

A generic ASGI server costs several times more CPU per request than verifying, parsing and
queueing a webhook (a task, message dicts and awaits per request). This protocol does only what
the receiver needs and asks :mod:`knit_provider.webhook.handling` what to answer, exactly as the
ASGI app does: keep-alive and pipelining (answers leave in request order), ``Content-Length`` and
chunked bodies, 413 as soon as a body passes the limit (the rest is never buffered), 100-continue,
an idle timeout, and a graceful stop that answers what is in flight.

It faces strangers, so nothing a client sends is held without a bound (see ``ReceiverSettings``):
URL (414), one header, the number of headers and the whole head (431) are counted as they arrive,
and a request must be complete within deadlines counted from its first byte (408), so trickled
bytes buy no time. Each of these answers is followed by closing the connection.

Connections are bounded per process (``max_connections``) and per client address
(``max_connections_per_address``). At the process's cap the connection idle longest (no request in
progress) is closed to make room, so idle connections, which cost a stranger nothing to reopen,
never keep a delivery out; only when none is idle, or past its address's cap, does a new connection
get a fixed 503, closed before anything is read.

Bodies are bounded together by the process's :class:`~knit_provider.webhook.budget.BodyBudget`, the
same as in the ASGI app: each request claims its declared ``Content-Length`` (a chunked one, its bytes
as they arrive), and gets 503 with ``Retry-After`` when it does not fit (Knit sends it again later).
A body over ``LARGE_BODY_BYTES`` is read only while it holds one of ``max_large_bodies`` places, one
read per turn of the event loop, and is hashed as it arrives: forgers sending 5 MiB bodies cannot make
a small delivery wait for more than a few reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import httptools

from knit_provider.webhook import handling, stats
from knit_provider.webhook.budget import BodyBudget, BodyClaim
from knit_provider.webhook.handling import Answer, Pending
from knit_provider.webhook.settings import LARGE_BODY_BYTES
from knit_provider.webhook.signature import Signer
from knit_provider.webhook.writer import GroupCommitWriter

log = logging.getLogger(__name__)

# After the last answer of a connection: the client may still be sending (a body past the limit), and
# closing with unread bytes resets the connection, which can destroy the answer before it is read.
LINGER_SECONDS = 1.0
MAX_IN_FLIGHT = 64  # pipelined requests per connection waiting for answers before reading pauses
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = (b"connection", b"close")
_MALFORMED = handling.json_answer(400, {"error": "malformed HTTP request"}, _CLOSE)
# A request's place among the large bodies being read (RawServer.enter_lane).
_OUT, _WAITING, _READING = 0, 1, 2


class _Clock:
    """The ``date`` header, rendered once a second, and the answers that carry it: 200, and the 503s at the caps."""

    def __init__(self, busy: Answer, busy_address: Answer) -> None:
        self._busy = busy
        self._busy_address = busy_address
        self._second = 0
        self.tick()

    def tick(self) -> None:
        second = int(time.time())
        if second != self._second:  # ticks come more often than once a second when deadlines are short
            self._second = second
            self.date = b"date: " + formatdate(second, usegmt=True).encode() + b"\r\n"
            self.ok = self.render(handling.OK, close=False)
            self.busy = self.render(self._busy, close=True)
            self.busy_address = self.render(self._busy_address, close=True)

    def render(self, answer: Answer, close: bool, with_body: bool = True) -> bytes:
        head = [
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            % (answer.status, _REASONS.get(answer.status, b""), len(answer.body)),
            self.date,
        ]
        head += [name + b": " + value + b"\r\n" for name, value in answer.headers]
        if close and _CLOSE not in answer.headers:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if with_body:
            head.append(answer.body)
        return b"".join(head)


class _Slot:
    """One request's place in its connection's answer order; called back when its commit is done."""

    __slots__ = ("close", "data", "pending", "protocol", "with_body")

    def __init__(self, protocol: HttpProtocol, close: bool, with_body: bool) -> None:
        self.protocol = protocol
        self.close = close
        self.with_body = with_body
        self.pending: Pending | None = None
        self.data: bytes | None = None

    def set(self, answer: Answer) -> None:
        server = self.protocol.server
        stats.answered(answer.status)
        close = self.close or server.stopping or _CLOSE in answer.headers
        self.close = close
        if answer is handling.OK and self.with_body and not close:
            self.data = server.clock.ok
        else:
            self.data = server.clock.render(answer, close, self.with_body)

    def __call__(self, future: asyncio.Future[Any]) -> None:
        if self.pending is not None:
            self.set(handling.outcome(self.pending))
        elif future.cancelled() or future.exception() is not None:
            self.set(handling.unavailable("unexpected receiver error", self.protocol.server.writer))
        else:
            self.set(future.result())
        self.protocol.flush()


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse requests, decide, and write the answers back in order."""

    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.limits = server.writer.settings
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.last_active = 0.0  # when the connection last had nothing to do: idleness counts from here
        self.started = 0.0  # when the request being read began: its deadlines count from here
        self.slots: deque[_Slot] = deque()
        self.in_message = False
        self.in_head = False  # a request has begun and its head is not complete
        self.stopped = False  # no more requests are read on this connection
        self.address: str | None = None  # the client's address, counted against max_connections_per_address
        self._reading_paused = False
        self._writing_paused = False
        self._closing = False
        self._url = b""
        self._headers: handling.Headers = []
        self._head_size = 0  # header names and values of this request so far
        self._raw = 0  # bytes of the reads that arrived while this request was in progress (see data_received)
        self._fresh = False  # the request began within the read being parsed
        self._begun = 0  # requests begun on this connection
        self._chunks: list[bytes] = []
        self._size = 0
        self._target: str | Answer = handling.NOT_FOUND
        self._head: handling.Head | None = None
        self._signer: Signer | None = None  # the body's HMAC, fed as it arrives
        self._claim = BodyClaim(server.budget)  # what the body being read holds of the process's budget
        self._lane = _OUT
        self._expects_continue = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self.server
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else None
        if address is not None and server.per_address.get(address, 0) >= self.limits.max_connections_per_address:
            self._refuse("address_connections", server.clock.busy_address)
        elif len(server.connections) >= self.limits.max_connections and not server.close_idlest():
            self._refuse("connections", server.clock.busy)
        else:
            self.address = address
            self.last_active = time.monotonic()
            server.admit(self)

    def _refuse(self, reason: str, busy: bytes) -> None:
        """Refused before anything is read: a few bytes written, then the socket is gone."""
        self.stopped = self._closing = True
        stats.REJECTED[reason].inc()
        stats.answered(503)
        self.transport.write(busy)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stopped = True
        self.slots.clear()
        self._end_body()
        self.server.forget(self)

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        if self.in_head:
            # The head goes on from an earlier read, and httptools holds a header until its end: feed
            # it no more than the head's limit leaves room for, and refuse a head that goes on past it.
            room = self.limits.max_head_bytes - self._raw
            if len(data) > room:
                request = self._begun
                self._feed(data[:room])
                if self.in_head and self._begun == request and not self.stopped:
                    self._reject("head", self._head_too_large())
                if self.stopped:
                    return
                data = data[room:]  # the head ended within the room: the rest is its body, or next requests
        self._feed(data)
        if self._lane == _READING:
            # A large body gets one read per turn of the loop (libuv would read up to 32 in a row),
            # so that the other connections' requests are read, and answered, in between.
            self._pause_reading()
            asyncio.get_running_loop().call_soon(self._maybe_resume_reading)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject("malformed", _MALFORMED)
        except httptools.HttpParserError:
            self._reject("malformed", _MALFORMED)
        if self.in_message and not self.stopped:
            # The request goes on past this read. httptools holds a header until its end, so its
            # bytes are counted here as they arrive. The read a request began in is not counted (what
            # preceded it in the read is unknown), so the parser holds at most one read more.
            if self._fresh:
                self._fresh = False
            else:
                self._raw += len(data)
                self._check_size()

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._maybe_resume_reading()

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.server.idle.pop(self, None)
        self.in_message = self.in_head = self._fresh = True
        self._begun += 1
        self.started = time.monotonic()
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._raw = 0
        self._chunks = []
        self._size = 0
        self._head = None

    def on_url(self, url: bytes) -> None:
        if self.stopped:
            return
        url = self._url + url
        if len(url) > self.limits.max_url_bytes:
            self._reject("url", handling.closing(414, f"URL longer than {self.limits.max_url_bytes} bytes"))
        else:
            self._url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.stopped:
            return
        limits = self.limits
        size = len(name) + len(value)
        self._head_size += size
        if size > limits.max_header_bytes:
            self._reject("header", handling.closing(431, f"a header is larger than {limits.max_header_bytes} bytes"))
        elif len(self._headers) >= limits.max_headers:
            self._reject("headers", handling.closing(431, f"more than {limits.max_headers} headers"))
        elif self._head_size + len(self._url) > limits.max_head_bytes:
            self._reject("head", handling.closing(431, f"request head larger than {limits.max_head_bytes} bytes"))
        else:
            self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.stopped:
            return
        method = self.parser.get_method().decode("ascii")
        self._target = target = handling.route(method, _path(self._url))
        if target != handling.WEBHOOK:
            return
        limit = self.limits.max_body_bytes
        head = handling.check_headers(self._headers, limit)
        if isinstance(head, Answer):
            if head.status == 413:  # refuse the body before it is sent
                self._reject("size", head)
            else:
                self._target = head
            return
        self._head = head
        if head.length and not self._cover(head.length):
            return
        self._expects_continue = (b"expect", b"100-continue") in self._headers
        if head.length is not None and head.length > LARGE_BODY_BYTES:
            self._large_body()
        elif self._expects_continue:
            self._may_read_body()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._head is None or self.stopped:
            return  # not a webhook (its body is not needed), or already answered
        limit = self.limits.max_body_bytes
        if self._size > limit:
            self._reject("size", handling.too_large(limit))
            return
        if not self._cover(self._size):
            return  # chunked: claimed as it arrives
        if self._lane == _OUT and self._size > LARGE_BODY_BYTES:
            self._large_body()  # chunked, and large after all
        self._chunks.append(body)
        if self._signer is not None:
            self._signer.update(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.stopped:
            return
        method = self.parser.get_method()
        slot = _Slot(self, self.server.stopping or not self.parser.should_keep_alive(), method != b"HEAD")
        self.slots.append(slot)
        target = self._target
        if isinstance(target, Answer):
            slot.set(target)
        elif target == handling.WEBHOOK:
            head = self._head
            assert head is not None
            chunks, signer = self._chunks, self._signer
            self._end_body()  # the body is the writer's now (its queue has a bound of its own), or dropped
            try:
                raw_signed = None if signer is None else signer.matches(head.signature)
                decided = handling.decide(self.server.writer, head, self._headers, chunks, raw_signed)
            except Exception:
                log.exception("Unexpected error while receiving a webhook; answering 503 so that it is sent again")
                decided = handling.unavailable("unexpected receiver error", self.server.writer)
            if isinstance(decided, Answer):
                if decided.status == 401:
                    stats.REJECTED["signature"].inc()
                slot.set(decided)
            else:
                slot.pending = decided
                decided.future.add_done_callback(slot)
        elif target == handling.LIVE:
            slot.set(handling.OK)
        else:
            asyncio.ensure_future(handling.health(self.server.writer)).add_done_callback(slot)
        if slot.close:
            self.stopped = True
        if slot.data is not None and len(self.slots) == 1:
            self.flush()
        elif len(self.slots) >= MAX_IN_FLIGHT:
            self._pause_reading()

    # -- limits -----------------------------------------------------------------------------------
    def _head_too_large(self) -> Answer:
        return handling.closing(431, f"request head larger than {self.limits.max_head_bytes} bytes")

    def _check_size(self) -> None:
        """Cut a request whose chunk framing and trailers are past their bound (heads are fed up to theirs)."""
        limits = self.limits
        # The body's own bytes are bounded in on_body; trailers are headers httptools holds until they
        # end. Framing as large as the body itself is more than any client sends but one of tiny chunks.
        if not self.in_head and self._raw - self._size > limits.max_head_bytes + self._size:
            self._reject(
                "head",
                handling.closing(
                    431, f"chunk framing and trailers larger than {limits.max_head_bytes} bytes plus the body"
                ),
            )

    def _cover(self, size: int) -> bool:
        """Hold ``size`` bytes of the process's body budget for this body; refuse the request (503) if not."""
        if self._claim.cover(size):
            return True
        self._stop(self.server.budget.full)
        return False

    def _large_body(self) -> None:
        """Read a body over LARGE_BODY_BYTES only with a place among the large bodies, hashing it as it arrives.

        Hashed piece by piece, a forgery is refused without its pieces being joined, and hashing it never
        holds the loop for more than a read (a small body is hashed whole: one call is cheaper).
        """
        secret = self.limits.secret
        if secret is not None and self._head is not None and self._head.signature:
            self._signer = Signer(secret)
            for piece in self._chunks:
                self._signer.update(piece)
        if self.server.enter_lane(self):
            self._lane = _READING
            self._may_read_body()
        else:
            self._lane = _WAITING  # its body deadline still runs
            self._pause_reading()

    def lane_granted(self) -> None:
        """A place among the large bodies being read is this request's now: read its body."""
        self._lane = _READING
        self._may_read_body()
        self._maybe_resume_reading()

    def _may_read_body(self) -> None:
        if self._expects_continue and not self.slots and not self.transport.is_closing():
            self.transport.write(_CONTINUE)

    def _end_body(self) -> None:
        """Give back what the request being read holds: its claim on the body budget, its place among large bodies."""
        self._claim.release()
        if self._lane != _OUT:
            self.server.leave_lane(self, self._lane == _READING)
            self._lane = _OUT
        self._chunks = []
        self._signer = None
        self._expects_continue = False

    def check(self, now: float) -> None:
        """Cut a request past its deadline; close a connection idle too long (or done, when stopping)."""
        if self._closing:
            return
        if self.in_message and not self.stopped:
            limits = self.limits
            if self.in_head:
                if now - self.started > limits.head_timeout_seconds:
                    self._reject(
                        "head_timeout",
                        handling.closing(408, f"request head not complete within {limits.head_timeout_seconds:g} s"),
                    )
            elif now - self.started > limits.body_timeout_seconds:
                self._reject(
                    "body_timeout",
                    handling.closing(408, f"request not complete within {limits.body_timeout_seconds:g} s"),
                )
        elif (
            not self.slots
            and not self.in_message
            and (self.server.stopping or now - self.last_active > self.limits.idle_timeout_seconds)
        ):
            self.close()

    def _reject(self, reason: str, answer: Answer) -> None:
        stats.REJECTED[reason].inc()
        self._stop(answer)

    # -- answers ----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every answer that is ready, in request order; close after one that says so."""
        slots = self.slots
        transport = self.transport
        while slots and slots[0].data is not None:
            slot = slots.popleft()
            if transport.is_closing():
                slots.clear()
                return
            transport.write(slot.data)
            if slot.close:
                slots.clear()
                self.close()
                return
        if not slots:
            self.last_active = time.monotonic()
            if self.server.stopping and not self.in_message:
                self.close()
                return
            if not self.in_message and not self.stopped:
                idle = self.server.idle
                idle.pop(self, None)
                idle[self] = None  # idle from now: after every connection idle for longer
        if self._reading_paused:
            self._maybe_resume_reading()

    def close(self) -> None:
        """Close after the answers written so far, reading (and dropping) what the client still sends."""
        self.stopped = True
        self.server.idle.pop(self, None)
        self._end_body()
        transport = self.transport
        if self._closing or transport.is_closing():
            return
        self._closing = True
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self._release)
        else:
            transport.close()

    def _release(self) -> None:
        # A client that has not taken its answers after the linger is not reading them: drop them
        # rather than hold the connection (and its place under max_connections) until it does.
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def close_idle(self) -> None:
        """Close at once to make room for a new connection: idle, it has nothing in flight to answer."""
        self.stopped = self._closing = True
        stats.IDLE_CLOSED.inc()
        self.server.forget(self)
        self.transport.close()

    def _stop(self, answer: Answer) -> None:
        """Answer ``answer`` after what is in flight, read no further request, then close."""
        self.stopped = True
        self.server.idle.pop(self, None)
        self._end_body()
        self.in_message = self.in_head = False
        slot = _Slot(self, True, True)
        slot.set(answer)
        self.slots.append(slot)
        if len(self.slots) == 1:
            self.flush()

    def _pause_reading(self) -> None:
        if not self._reading_paused and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._reading_paused
            and not self._writing_paused
            and self._lane != _WAITING
            and len(self.slots) < MAX_IN_FLIGHT // 2
        ):
            self._reading_paused = False
            self.transport.resume_reading()


def _path(url: bytes) -> str:
    if not url.startswith(b"/"):
        url = httptools.parse_url(url).path or b"/"  # absolute form: http://host/webhook
    path = url.split(b"?", 1)[0].decode("latin-1")
    return unquote(path) if "%" in path else path


class RawServer:
    """The listening socket(s) of one process, its connections and its writer; limits come from its settings."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        self.writer = writer
        settings = writer.settings
        self.clock = _Clock(
            handling.unavailable("too many open connections", writer),
            handling.unavailable("too many open connections from this address", writer),
        )
        self.budget = BodyBudget(writer)
        self.connections: set[HttpProtocol] = set()
        # The connections with no request in progress, the one idle longest first (dicts keep order).
        self.idle: dict[HttpProtocol, None] = {}
        self.per_address: dict[str, int] = {}  # open connections per client address
        stats.SIGNATURES_VERIFIED.set(settings.secret is not None)
        self.lane_free = settings.max_large_bodies  # places left among the large bodies being read
        self.lane_waiting: deque[HttpProtocol] = deque()  # requests waiting for one, first come first served
        self.stopping = False
        # Deadlines are checked at each tick: four ticks per shortest deadline, at most a second apart.
        self.tick_seconds = min(
            1.0, min(settings.head_timeout_seconds, settings.body_timeout_seconds, settings.idle_timeout_seconds) / 4
        )
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._all_closed = asyncio.Event()

    def enter_lane(self, connection: HttpProtocol) -> bool:
        """Take a place among the large bodies being read, or queue ``connection`` for one (False)."""
        if self.lane_free:
            self.lane_free -= 1
            return True
        self.lane_waiting.append(connection)
        return False

    def leave_lane(self, connection: HttpProtocol, reading: bool) -> None:
        """Give up a place (``reading``: to the first request waiting), or stop waiting for one."""
        if not reading:
            self.lane_waiting.remove(connection)
        elif self.lane_waiting:
            self.lane_waiting.popleft().lane_granted()
        else:
            self.lane_free += 1

    def admit(self, connection: HttpProtocol) -> None:
        self.connections.add(connection)
        self.idle[connection] = None
        if connection.address is not None:
            self.per_address[connection.address] = self.per_address.get(connection.address, 0) + 1
        stats.OPEN_CONNECTIONS.inc()

    def close_idlest(self) -> bool:
        """Close the connection idle longest to make room for a new one; ``False`` when none is idle."""
        connection = next(iter(self.idle), None)
        if connection is None:
            return False
        connection.close_idle()
        return True

    def forget(self, connection: HttpProtocol) -> None:
        self.idle.pop(connection, None)
        if connection in self.connections:
            self.connections.remove(connection)
            stats.OPEN_CONNECTIONS.dec()
            address = connection.address
            if address is not None:
                left = self.per_address[address] - 1
                if left:
                    self.per_address[address] = left
                else:
                    del self.per_address[address]
        if self.stopping and not self.connections:
            self._all_closed.set()

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self), host, port, reuse_port=reuse_port, backlog=4096
        )
        self._ticker = asyncio.create_task(self._tick_forever(), name="knit-http-clock")

    @property
    def port(self) -> int:
        """The port listened on (the one the kernel chose when started with port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            now = time.monotonic()
            self.clock.tick()
            stats.QUEUE_DEPTH.set(self.writer.queue_depth)
            stats.WRITERS_CONNECTED.set(self.writer.connected_writers)
            for connection in list(self.connections):
                connection.check(now)

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting, answer what is in flight (closing each connection after), then close the rest."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        now = time.monotonic()
        for connection in list(self.connections):
            connection.check(now)
        if self.connections:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace_seconds)
        for connection in list(self.connections):
            connection.transport.close()
        if self._ticker is not None:
            self._ticker.cancel()
