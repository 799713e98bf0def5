"""Benchmark: what hostile clients cost the standalone receiver: memory, and time until it cuts them.

Each case runs against a fresh ``python -m knit_provider.webhook`` with default settings (only
the database URL and the signing key are given: what users get) on an embedded Postgres, over
127.0.0.1. The receiver's RSS is sampled every 50 ms (psutil); "RSS +" is its peak during the case
over its RSS just before. Every case stops by itself: a flood sends at most ``budget_mib`` or for
at most ``budget_s``, a trickle lasts at most ``trickle_budget_s``, and a receiver whose RSS passes
2 GiB is killed and the case reported as "UNBOUNDED" (``<case>_outcome``: ``closed`` or ``reset`` by
the receiver, ``budget`` spent without a cut, or ``killed``).

- header lines / header value / URL: one connection sends a request head that never ends (many
  1 KB header lines; one header value; one request target), as fast as the receiver reads it.
- trickled head / trickled body: one byte every 0.5 s, of a head that never ends, or of a
  body that ``Content-Length`` says is 1 MiB. Both run on one receiver of their own, beside the
  other cases (they cost nothing but time).
- idle connections: 2,000 connections opened at once from one address (127.0.0.2) that send
  nothing. Accepted is what the receiver holds open (its sockets, seen through psutil), refused what
  it did not (past the per-address cap, 256 by default); then when it closed each kind within the
  hold time, and whether a new ``GET /health`` from another address (127.0.0.1) is answered meanwhile.
- health: 400 concurrent ``GET /health`` from four addresses (100 each, under the per-address cap),
  then 50 pipelined on one connection; the database is up, so every answer should be a 200.
- forgers: real signed deliveries scheduled at ``DELIVERY_RATE``/s on 4 connections, first alone,
  then while 8 connections send 5 MiB JSON bodies with a wrong signature in a loop, as fast as
  loopback takes them (``forged_mib_per_s``). Given: the deliveries' p50/p99 per request and the
  rate they achieved (below ``DELIVERY_RATE`` when the receiver falls behind). Then their event ids
  are compared with ``knit_landing.events``: every delivery answered 200 must be stored, once, and
  nothing else (a delivery left without an answer may or may not be); lost, extra or twice-stored
  ids fail the benchmark (``error`` in the result, exit status 1).

Run: ``.venv/bin/python -m bench.bench_hostile [--full]``. The table goes to stderr, the result
to stdout as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import psutil
import psycopg2

from bench.ingest_load import body_parts
from bench.ingest_measure import ROOT, SECRET, landing_database
from knit_devtools.embedded_postgres import EmbeddedPostgres, free_port
from knit_devtools.services import Service, http_status, wait_until
from knit_provider.webhook.signature import sign

MIB = 1 << 20
RSS_LIMIT = 2 << 30
SAMPLE_SECONDS = 0.05
DRAIN_SECONDS = 1.0
TRICKLE_INTERVAL = 0.5
STRANGER_ADDRESS = "127.0.0.2"  # the idle case's one client (loopback: any 127.x address reaches the receiver)
IDLE_CONNECTIONS = 2000
CONCURRENT_HEALTH = 400
PIPELINED_HEALTH = 50
FORGERS = 8
FORGED_BODY_BYTES = 5 * MIB - 1024  # just under the default body limit, so that it is read and checked whole
DELIVERY_RATE = 200.0  # real deliveries per second: far below capacity, so latency is the receiver's own
DELIVERY_CONNECTIONS = 4


@dataclass(frozen=True)
class Budget:
    """How much each case may send, and for how long."""

    bytes: int
    seconds: float
    trickle_seconds: float
    hold_seconds: float
    forge_seconds: float


# The trickles outlast the default head and body deadlines (30 s and 60 s from the first byte); the
# hold outlasts the default keep-alive idle timeout (15 s). They run beside the other cases.
QUICK = Budget(bytes=64 * MIB, seconds=20, trickle_seconds=65, hold_seconds=20, forge_seconds=10)
FULL = Budget(bytes=256 * MIB, seconds=60, trickle_seconds=120, hold_seconds=40, forge_seconds=20)


@dataclass
class Row:
    """One line of the table, and its figures for the JSON result (keys prefixed with ``key``)."""

    case: str
    key: str
    sent: str = ""
    answer: str = ""
    ended: str = ""
    rss_mib: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def result(self) -> dict[str, Any]:
        return {f"{self.key}_{name}": value for name, value in {**self.figures, "rss_growth_mib": self.rss_mib}.items()}


class Receiver:
    """A fresh standalone receiver with default settings; its RSS watched, and killed past ``RSS_LIMIT``."""

    def __init__(self, name: str, database_url: str, workdir: Path) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "knit_provider.webhook", "--port", str(self.port), "--database-url", database_url]
        self.service = Service(
            name,
            argv,
            log_path=workdir / f"{name}.log",
            cwd=ROOT,
            env={**os.environ, "KNIT_WEBHOOK_SECRET": SECRET},
            ready_url=f"http://127.0.0.1:{self.port}/health",
        )
        self.killed = False
        self.base_rss = self.peak_rss = 0
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def growth_mib(self) -> float:
        return round((self.peak_rss - self.base_rss) / MIB, 1)

    def __enter__(self) -> Receiver:
        self.service.start()
        assert self.service.process is not None
        self.process = psutil.Process(self.service.process.pid)
        self.base_rss = self.peak_rss = self.process.memory_info().rss
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watcher.join()
        self.service.kill()  # nothing to keep: each case gets a fresh receiver

    def _watch(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                rss = self.process.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.peak_rss = max(self.peak_rss, rss)
            if rss > RSS_LIMIT:
                self.killed = True
                self.process.kill()
                return

    def peers(self) -> set[int]:
        """Client ports of the connections the receiver holds open (its own sockets on its port)."""
        return {
            c.raddr.port
            for c in self.process.net_connections("tcp")
            if c.laddr and c.laddr.port == self.port and c.raddr and c.status == psutil.CONN_ESTABLISHED
        }


class Answers:
    """Statuses of the HTTP responses in a byte stream (any number, pipelined), parsed by httptools."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.statuses.append(self._parser.get_status_code())


def _status_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode("latin-1")[9:] if data.startswith(b"HTTP/") else ""


# -- one connection that never finishes its request ---------------------------------------------------


@dataclass
class Cut:
    sent: int
    seconds: float
    how: str  # "closed" or "reset" by the receiver, "budget" spent, or "killed" (unbounded)
    answer: str


def _stream(
    receiver: Receiver, head: bytes, chunk: bytes, max_bytes: int, max_seconds: float, interval: float | None = None
) -> Cut:
    """Send ``head``, then ``chunk`` again and again (one byte every ``interval`` if given) until cut or budget.

    Once the budget is spent, the connection stays open (nothing more sent) for ``DRAIN_SECONDS``,
    so that the receiver's peak RSS includes what it had yet to read.
    """
    sock = socket.create_connection(receiver.address, timeout=5)
    sock.setblocking(False)
    started = time.monotonic()
    pending, sent, answer, next_drip = head, 0, b"", started
    spent_at: float | None = None
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def cut(how: str) -> Cut:
        selector.close()
        sock.close()
        ended = spent_at if spent_at is not None else time.monotonic()
        return Cut(sent, ended - started, "killed" if receiver.killed else how, _status_line(answer))

    try:
        while True:
            now = time.monotonic()
            if receiver.killed:
                return cut("killed")
            if spent_at is None and (now - started > max_seconds or sent >= max_bytes):
                spent_at, pending = now, b""
            if spent_at is not None and now - spent_at > DRAIN_SECONDS:
                return cut("budget")
            if spent_at is None and not pending:
                if interval is None:
                    pending = chunk
                elif now >= next_drip:
                    pending = chunk[(sent - len(head)) % len(chunk) :][:1]
                    next_drip = now + interval
            selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0))
            wait = 0.1 if interval is None or spent_at is not None else max(0.0, min(0.1, next_drip - now))
            for _key, events in selector.select(wait):
                if events & selectors.EVENT_READ:
                    data = sock.recv(65536)
                    if not data:
                        return cut("budget" if spent_at is not None else "closed")
                    answer += data[: max(0, 256 - len(answer))]
                if events & selectors.EVENT_WRITE and pending:
                    written = sock.send(pending)
                    sent += written
                    pending = pending[written:]
    except (ConnectionResetError, BrokenPipeError):
        return cut("budget" if spent_at is not None else "reset")


def _stream_row(case: str, key: str, receiver: Receiver, result: Cut, shared: str = "") -> Row:
    took = f"{result.seconds:.1f} s" if result.seconds >= 1 else f"{result.seconds * 1000:.0f} ms"
    ended = {
        "closed": f"cut after {took}",
        "reset": f"cut (reset) after {took}",
        "budget": f"NOT cut, budget spent ({took})",
        "killed": f"UNBOUNDED: killed at {RSS_LIMIT // MIB} MiB RSS after {took}",
    }[result.how]
    sent = f"{result.sent / MIB:.1f} MiB" if result.sent >= MIB else f"{result.sent:,} B"
    return Row(
        case,
        key,
        sent=sent,
        answer=result.answer or "-",
        ended=ended + shared,
        rss_mib=receiver.growth_mib,
        figures={
            "sent_bytes": result.sent,
            "outcome": result.how,
            "seconds": round(result.seconds, 3),
            "answer": result.answer or None,
        },
    )


_POST = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def flood_cases(db: str, workdir: Path, budget: Budget) -> Iterator[Row]:
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    cases = [
        ("endless header lines", "header_lines", _POST, line * 64),
        ("endless header value", "header_value", _POST + b"X-Filler: ", b"a" * 65536),
        ("endless URL", "url", b"GET /", b"a" * 65536),
    ]
    for case, key, head, chunk in cases:
        with Receiver(key, db, workdir) as receiver:
            yield _stream_row(case, key, receiver, _stream(receiver, head, chunk, budget.bytes, budget.seconds))


def trickle_cases(db: str, workdir: Path, budget: Budget) -> list[Row]:
    """Both trickles at once, on one receiver: they only take time."""
    body = b"a" * MIB
    body_head = (
        _POST
        + b"X-Knit-Signature: "
        + sign(body, SECRET.encode()).encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with Receiver("trickle", db, workdir) as receiver, ThreadPoolExecutor(2) as pool:
        head = pool.submit(
            _stream, receiver, _POST, b"X-Trickle: a\r\n", budget.bytes, budget.trickle_seconds, TRICKLE_INTERVAL
        )
        trickled_body = pool.submit(
            _stream, receiver, body_head, body, budget.bytes, budget.trickle_seconds, TRICKLE_INTERVAL
        )
        shared = " (RSS: both trickles, one receiver)"
        return [
            _stream_row("trickled head (1 B / 0.5 s)", "trickled_head", receiver, head.result(), shared),
            _stream_row("trickled body (1 B / 0.5 s)", "trickled_body", receiver, trickled_body.result(), shared),
        ]


# -- many connections ---------------------------------------------------------------------------------


def _closes(times: list[float | None], hold: float) -> str:
    """``times`` (seconds after opening, None: still open) as "n closed by it (median t s), m still open"."""
    closed = [t for t in times if t is not None]
    parts = [f"{len(closed)} closed by it (median after {statistics.median(closed):.1f} s)"] if closed else []
    if len(closed) < len(times):
        parts.append(f"{len(times) - len(closed)} still open after {hold:.0f} s")
    return ", ".join(parts) or "none"


def idle_case(db: str, workdir: Path, budget: Budget) -> Row:
    with Receiver("idle", db, workdir) as receiver:
        socks: list[socket.socket] = []
        failed = 0
        started = time.monotonic()
        for _ in range(IDLE_CONNECTIONS):
            sock = socket.socket()
            sock.settimeout(2)
            try:
                sock.bind((STRANGER_ADDRESS, 0))  # one stranger; the probe below comes from another address
                sock.connect(receiver.address)
            except OSError:
                sock.close()
                failed += 1
                continue
            socks.append(sock)
        closed_at: dict[socket.socket, float] = {}

        def watch() -> None:
            """Note when the receiver closes each connection, until the hold time is over."""
            deadline = started + budget.hold_seconds
            with selectors.DefaultSelector() as selector:
                for sock in socks:
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ)
                while len(closed_at) < len(socks) and time.monotonic() < deadline:
                    for key, _ in selector.select(0.2):
                        try:
                            data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                        except OSError:
                            data = b""
                        if not data:
                            closed_at[key.fileobj] = time.monotonic() - started  # type: ignore[index]
                            selector.unregister(key.fileobj)

        with ThreadPoolExecutor(1) as pool:
            watching = pool.submit(watch)
            # Accepting 2,000 takes the receiver a moment: wait until it holds them all, or 5 s.
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: len(receiver.peers()) >= len(socks), 5, "the receiver to accept")
            # Accepted: the connections the receiver itself holds open. Refused: the rest (failed to
            # connect, closed at once, or left waiting in the kernel's backlog).
            peers = receiver.peers()
            accepted = {sock for sock in socks if sock.getsockname()[1] in peers}
            health = http_status(f"http://127.0.0.1:{receiver.port}/health", timeout=5)
            watching.result()
        for sock in socks:
            sock.close()
        refused = IDLE_CONNECTIONS - len(accepted)
        held_times = [closed_at.get(sock) for sock in socks if sock in accepted]
        refused_times = [closed_at.get(sock) for sock in socks if sock not in accepted]
        held_closed = [t for t in held_times if t is not None]
        refused_closed = [t for t in refused_times if t is not None]
        return Row(
            f"{IDLE_CONNECTIONS:,} idle connections",
            "idle",
            sent="nothing",
            answer=f"accepted {len(accepted)}, refused {refused}; new GET /health meanwhile: {health or 'no answer'}",
            ended=_killed(receiver) + f"accepted: {_closes(held_times, budget.hold_seconds)}; "
            f"refused: {_closes(refused_times, budget.hold_seconds)}",
            rss_mib=receiver.growth_mib,
            figures={
                "accepted": len(accepted),
                "refused": refused,
                "connect_failed": failed,
                "accepted_closed": len(held_closed),
                "accepted_closed_median_s": round(statistics.median(held_closed), 1) if held_closed else None,
                "refused_closed_median_s": round(statistics.median(refused_closed), 1) if refused_closed else None,
                "refused_still_open": len(refused_times) - len(refused_closed),
                "still_open": len(socks) - len(closed_at),
                "health_meanwhile": health,
            },
        )


def _killed(receiver: Receiver) -> str:
    return f"UNBOUNDED: killed at {RSS_LIMIT // MIB} MiB RSS; " if receiver.killed else ""


_HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


async def _probe(port: int, requests: int, source: str = "127.0.0.1") -> list[int]:
    """Send ``requests`` pipelined GET /health on one connection from ``source``; the statuses answered within 30 s."""
    answers = Answers()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        return []
    try:
        writer.write(_HEALTH * requests)
        async with asyncio.timeout(30):
            while len(answers.statuses) < requests and (data := await reader.read(65536)):
                answers.feed(data)
    except (OSError, TimeoutError, httptools.HttpParserError):
        pass
    finally:
        writer.close()
    return answers.statuses


def _counts(statuses: list[int], expected: int) -> dict[str, int]:
    counted = Counter(statuses)
    return {
        "200": counted.pop(200, 0),
        "503": counted.pop(503, 0),
        "other": sum(counted.values()),
        "no_answer": expected - len(statuses),
    }


def health_cases(db: str, workdir: Path) -> list[Row]:
    rows = []
    with Receiver("health", db, workdir) as receiver:

        async def concurrent() -> list[int]:
            # Spread over four loopback addresses: one address past the per-address cap gets 503 by design.
            sources = [f"127.0.0.{1 + n % 4}" for n in range(CONCURRENT_HEALTH)]
            found = await asyncio.gather(*(_probe(receiver.port, 1, source) for source in sources))
            return [status for statuses in found for status in statuses]

        for case, key, statuses, expected in (
            (
                f"{CONCURRENT_HEALTH} concurrent GET /health",
                "health_concurrent",
                asyncio.run(concurrent()),
                CONCURRENT_HEALTH,
            ),
            (
                f"{PIPELINED_HEALTH} pipelined GET /health",
                "health_pipelined",
                asyncio.run(_probe(receiver.port, PIPELINED_HEALTH)),
                PIPELINED_HEALTH,
            ),
        ):
            counts = _counts(statuses, expected)
            rows.append(
                Row(
                    case,
                    key,
                    sent=f"{expected} requests",
                    answer=", ".join(f"{name}: {n}" for name, n in counts.items() if n),
                    ended=_killed(receiver) + ("all 200" if counts["200"] == expected else "NOT all 200"),
                    rss_mib=receiver.growth_mib,
                    figures=counts,
                )
            )
    return rows


# -- forged large bodies beside real deliveries -------------------------------------------------------


def _deliveries(url: str, seconds: float, prefix: str) -> dict[str, Any]:
    """Child process: signed deliveries scheduled at ``DELIVERY_RATE``/s for ``seconds``; their latencies."""
    import uvloop

    return uvloop.run(_deliver(url, seconds, prefix))


def _percentile(values: list[float], q: float) -> float | None:
    return round(sorted(values)[min(len(values) - 1, int(len(values) * q))], 2) if values else None


async def _deliver(url: str, seconds: float, prefix: str) -> dict[str, Any]:
    """Each connection sends its share of the schedule, one request at a time, until ``seconds`` are over.

    ``p50_ms``/``p99_ms`` are per request (sent to answered); when the receiver is slower than the
    schedule, requests start late (``late_p99_ms``) and fewer are sent (``per_s``), as Knit's
    deliveries would queue.
    """
    import aiohttp

    parts = body_parts()
    count = int(seconds * DELIVERY_RATE)
    bodies = [f"{prefix}-{i}".join(parts).encode() for i in range(count)]
    signatures = [sign(body, SECRET.encode()) for body in bodies]  # built before the clock starts
    latencies: list[float] = []
    late: list[float] = []
    statuses: Counter[int] = Counter()
    acknowledged: list[str] = []  # answered 200: must be stored
    unanswered: list[str] = []  # no answer: may or may not be stored
    start = time.monotonic() + 0.2
    end = start + seconds

    async def worker(first: int, session: aiohttp.ClientSession) -> None:
        for i in range(first, count, DELIVERY_CONNECTIONS):
            scheduled = start + i / DELIVERY_RATE
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            sent = time.monotonic()
            if sent > end:
                return
            late.append((sent - scheduled) * 1000)
            headers = {
                "Content-Type": "application/json",
                "X-Knit-Signature": signatures[i],
                "X-Knit-Integration-Id": "bench-hostile",
            }
            try:
                async with session.post(url, data=bodies[i], headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1
            except (aiohttp.ClientError, TimeoutError):
                statuses[0] += 1
                unanswered.append(f"{prefix}-{i}")
                continue
            if response.status == 200:
                acknowledged.append(f"{prefix}-{i}")
            latencies.append((time.monotonic() - sent) * 1000)

    connector = aiohttp.TCPConnector(limit=DELIVERY_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(worker(k, session) for k in range(DELIVERY_CONNECTIONS)))
    ok = statuses.pop(200, 0)
    return {
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
        "late_p99_ms": _percentile(late, 0.99),
        "per_s": round(ok / seconds),
        "ok": ok,
        "not_ok": sum(statuses.values()),
        "acknowledged_ids": acknowledged,
        "unanswered_ids": unanswered,
    }


def _stored(database_url: str, prefix: str) -> Counter[str]:
    """The event ids of ``prefix`` in the landing table, with how many rows hold each."""
    with contextlib.closing(psycopg2.connect(database_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT event_id, count(*) FROM knit_landing.events WHERE event_id LIKE %s GROUP BY event_id",
            (prefix + "-%",),
        )
        return Counter(dict(cur.fetchall()))


def check_landed(database_url: str, prefix: str, delivered: dict[str, Any]) -> dict[str, int]:
    """Compare the ids of one phase's deliveries with the table's (and take the id lists out of ``delivered``).

    ``lost``: answered 200, not stored. ``extra``: stored, but answered otherwise than 200 (a
    refusal must store nothing) or never sent. ``twice``: stored more than once. The receiver
    answers 200 once the event is committed, so nothing is waited for.
    """
    acknowledged, unanswered = set(delivered.pop("acknowledged_ids")), set(delivered.pop("unanswered_ids"))
    stored = _stored(database_url, prefix)
    return {
        "lost": len(acknowledged - stored.keys()),
        "extra": len(stored.keys() - acknowledged - unanswered),
        "twice": sum(1 for rows in stored.values() if rows > 1),
    }


def landing_errors(figures: dict[str, Any]) -> str | None:
    """One message naming every phase whose deliveries did not land as answered, or None."""
    wrong = [
        f"{name.split('real_', 1)[1]} {value}"  # the row's figures, or the result's (prefixed forgers_)
        for name, value in figures.items()
        if any(f"real_{kind}_" in name for kind in ("lost", "extra", "twice")) and value
    ]
    return "real deliveries not stored as answered: " + ", ".join(wrong) if wrong else None


def _forged_request() -> bytes:
    """A 5 MiB JSON event of many small objects (costly to parse), signed with the wrong key."""
    row = b'{"k":"field","v":"value-0123"},'
    rows = row * ((FORGED_BODY_BYTES - 200) // len(row))
    body = b'{"eventId":"forged","eventType":"record.new","eventData":{"rows":[' + rows[:-1] + b"]}}"
    body += b" " * (FORGED_BODY_BYTES - len(body))
    return (
        _POST
        + b"X-Knit-Signature: "
        + sign(body, b"not-the-key").encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


def _forge(address: tuple[str, int], request: bytes, until: float) -> Counter[int]:
    """One forger: send the forged request again and again until ``until``; count the answers (0: none)."""
    statuses: Counter[int] = Counter()
    while time.monotonic() < until:
        try:
            sock = socket.create_connection(address, timeout=10)
        except OSError:  # the receiver is gone (killed past the RSS limit): nothing more to forge
            statuses[0] += 1
            return statuses
        try:
            with sock:
                while time.monotonic() < until:
                    sock.sendall(request)
                    answers = Answers()
                    while not answers.statuses and (data := sock.recv(65536)):
                        answers.feed(data)
                    if not answers.statuses:
                        break
                    statuses[answers.statuses[0]] += 1
        except (OSError, httptools.HttpParserError):
            statuses[0] += 1
    return statuses


def forger_case(db: str, workdir: Path, budget: Budget) -> Row:
    with Receiver("forgers", db, workdir) as receiver, multiprocessing.get_context("spawn").Pool(1) as pool:
        url = f"http://127.0.0.1:{receiver.port}/webhook"
        alone = pool.apply(_deliveries, (url, budget.forge_seconds, "alone"))
        alone_peak = receiver.growth_mib
        request = _forged_request()
        # The forgers start first and stop after the deliveries (which start 0.2 s after being asked).
        until = time.monotonic() + budget.forge_seconds + 1
        with ThreadPoolExecutor(FORGERS) as forgers:
            futures = [forgers.submit(_forge, receiver.address, request, until) for _ in range(FORGERS)]
            beside = pool.apply(_deliveries, (url, budget.forge_seconds, "beside"))
            answered = sum((future.result() for future in futures), Counter())
        landed = {when: check_landed(db, when, d) for d, when in ((alone, "alone"), (beside, "beside"))}
        failures = answered.pop(0, 0)
        answer = ", ".join(f"{status}: {n}" for status, n in sorted(answered.items())) or "none"
        real = "; ".join(
            f"{d['p50_ms']}/{d['p99_ms']} ms, {d['per_s']}/s {when}"
            for d, when in ((alone, "alone"), (beside, "beside forgers"))
        )
        figures = {
            **{f"real_{name}_alone": value for name, value in alone.items()},
            **{f"real_{name}_beside": value for name, value in beside.items()},
            **{f"real_{name}_{when}": value for when, counts in landed.items() for name, value in counts.items()},
            "forged_answered": sum(answered.values()),
            "forged_failed": failures,
            "forged_mib_per_s": round(sum(answered.values()) * FORGED_BODY_BYTES / MIB / budget.forge_seconds),
            "rss_growth_mib_alone": alone_peak,
        }
        stored = landing_errors(figures) or "every 200 stored once"
        return Row(
            f"forgers: {FORGERS} x 5 MiB, wrong signature",
            "forgers",
            sent=f"{figures['forged_mib_per_s']:,} MiB/s forged",
            answer=f"forged: {answer}" + (f", {failures} failed" if failures else ""),
            ended=_killed(receiver) + f"real deliveries p50/p99: {real}; {stored}",
            rss_mib=receiver.growth_mib,
            figures=figures,
        )


# -- the run ------------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    header = ("case", "sent", "answer", "ended", "RSS +MiB")
    lines = [(r.case, r.sent, r.answer, r.ended, "-" if r.rss_mib is None else f"{r.rss_mib:,.1f}") for r in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def run(full: bool = False) -> dict[str, Any]:
    """Run every case on fresh receivers; print the table to stderr and return the flat figures."""
    budget = FULL if full else QUICK
    result: dict[str, Any] = {
        "benchmark": "hostile",
        "budget_mib": budget.bytes // MIB,
        "budget_s": budget.seconds,
        "trickle_budget_s": budget.trickle_seconds,
        "load_avg_1m_before": os.getloadavg()[0],
    }
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp, EmbeddedPostgres(fsync=True) as pg:
        workdir = Path(tmp)
        db = landing_database(pg, "hostile")
        with ThreadPoolExecutor(1) as background:
            trickles = background.submit(trickle_cases, db, workdir, budget)
            rows += flood_cases(db, workdir, budget)
            rows.append(idle_case(db, workdir, budget))
            rows += health_cases(db, workdir)
            rows.append(forger_case(db, workdir, budget))
            rows[3:3] = trickles.result()
    for row in rows:
        result.update(row.result())
    result["load_avg_1m_after"] = os.getloadavg()[0]
    error = landing_errors(result)
    if error:
        result["error"] = error
    print(table(rows), file=sys.stderr, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="bigger budgets: 256 MiB / 60 s per flood, 120 s trickles")
    result = run(full=parser.parse_args().full)
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
