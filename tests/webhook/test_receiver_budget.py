"""The standalone receiver's bounds on bodies: the process's body budget and the lane for large bodies.

Every request with a body claims its declared ``Content-Length`` (a chunked one, its bytes as they
arrive) from ``max_buffered_bytes`` and gets 503 with ``Retry-After`` when it does not fit; bodies over
``LARGE_BODY_BYTES`` are read only while they hold one of ``max_large_bodies`` places. Each case runs
over real sockets and checks that whatever ends a request (its answer, a refusal, a deadline, the
client going away) gives back what it held: a request of the same size succeeds afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psutil
import pytest
import raw_http
from prometheus_client.parser import text_string_to_metric_families
from raw_http import MiB
from receiver_helpers import InProcess, ReceiverProcess, event, scalar, settings_for, signed

from knit_devtools.embedded_postgres import free_port
from knit_provider.webhook.server import RawServer
from knit_provider.webhook.settings import LARGE_BODY_BYTES
from knit_provider.webhook.signature import Signer, sign

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
KiB = 1024
MEMORY_BOUND = 64 * MiB  # the budget, plus the admitted bodies parsed and queued


def _body(size: int) -> bytes:
    """A signed-able event of exactly ``size`` bytes (padded inside a field, so it lands)."""
    body = orjson.dumps(event(padding=""))
    return orjson.dumps(event(padding="x" * (size - len(body))))


def _head(body: bytes, *, chunked: bool = False, forged: bool = False) -> bytes:
    headers = signed(body)
    if forged:
        headers["X-Knit-Signature"] = sign(body, b"not-the-key")
    lines = ["POST /webhook HTTP/1.1", "Host: test", *(f"{name}: {value}" for name, value in headers.items())]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _open(port: int, data: bytes) -> tuple[Reader, Writer]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    return reader, writer


async def _post(port: int, body: bytes) -> int:
    """One whole request on a connection of its own; its status."""
    reader, writer = await _open(port, _head(body) + body)
    try:
        return (await raw_http.read_response(reader))[0]
    finally:
        writer.close()


async def _no_answer_within(reader: Reader, seconds: float) -> bool:
    """Whether nothing at all arrives within ``seconds`` (the request is held, not answered)."""
    try:
        await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return True
    return False


class PeakRss:
    """The highest resident memory of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.before = self.peak = self._process.memory_info().rss

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.before


def _refusals(metrics_port: int) -> float:
    """The receiver's count of requests refused for the body budget."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "knit_webhook_rejections_total" and sample.labels == {"reason": "memory_budget"}:
                return sample.value
    return 0.0


def _settled(server: RawServer) -> bool:
    """Nothing claimed, every large-body place free, nobody waiting for one."""
    return (server.budget.held, server.lane_free, len(server.lane_waiting)) == (
        0,
        server.writer.settings.max_large_bodies,
        0,
    )


# -- one process: refusals past the budget, its memory, its metrics ------------------------------------
BODY = 2 * MiB
BUDGET = 4 * BODY
CONNECTIONS = 40


@pytest.fixture(scope="module")
def receiver(landing_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReceiverProcess, int]]:
    metrics_port = free_port()
    process = ReceiverProcess(
        landing_url,
        tmp_path_factory.mktemp("budget") / "receiver.log",
        "--writers",
        "1",
        "--max-body-bytes",
        str(BODY),
        "--max-buffered-bytes",
        str(BUDGET),
        # Every admitted body is read at once: what bounds the memory here is the budget alone.
        "--max-large-bodies",
        str(CONNECTIONS),
        "--metrics-port",
        str(metrics_port),
    )
    try:
        yield process.wait_ready(), metrics_port
    finally:
        process.stop()


def test_bodies_past_the_budget_get_503_and_memory_stays_bounded(receiver: tuple[ReceiverProcess, int]) -> None:
    """40 connections each send all but the last byte of a 2 MiB body: 4 fit in the 8 MiB budget, 36 get 503."""
    process, metrics_port = receiver
    bodies = [_body(BODY) for _ in range(CONNECTIONS)]
    refused_before = _refusals(metrics_port)

    async def scenario(rss: PeakRss) -> tuple[list[Any], int, list[int], list[int]]:
        connections = [await _open(process.port, _head(body) + body[:-1]) for body in bodies]
        answers = [asyncio.ensure_future(raw_http.read_response(reader)) for reader, _ in connections]
        with contextlib.suppress(AssertionError):  # fewer than 36 refusals: the count below says so
            await raw_http.until(lambda: sum(answer.done() for answer in answers) >= CONNECTIONS - 4, 30, "refusals")
        refused = [answer.result() for answer in answers if answer.done()]
        for answer, (reader, _) in zip(answers, connections, strict=True):
            if answer.done():
                assert await raw_http.closed(reader)
        # The admitted bodies are read but for their last byte (else the bound below would prove nothing).
        await raw_http.until(lambda: rss.growth > BUDGET - MiB, 30, "the admitted bodies to be read")
        held = rss.growth
        admitted = [i for i, answer in enumerate(answers) if not answer.done()]
        for i in admitted:
            connections[i][1].write(bodies[i][-1:])
        statuses = [(await answers[i])[0] for i in admitted]
        # What they held is given back: as many again, of the same size, are read whole.
        again = list(await asyncio.gather(*(_post(process.port, _body(BODY)) for _ in range(4))))
        for _, writer in connections:
            writer.close()
        return refused, held, statuses, again

    assert asyncio.run(_post(process.port, _body(1000))) == 200  # warm: what is allocated once is not growth
    with PeakRss(process.proc.pid) as rss:
        refused, held, statuses, again = asyncio.run(scenario(rss))
    print(
        f"{len(refused)} refused; receiver RSS +{held / MiB:.1f} MiB holding the admitted bodies, "
        f"+{rss.growth / MiB:.1f} MiB at most (40 x 2 MiB sent, budget {BUDGET // MiB} MiB)"
    )
    assert len(refused) == CONNECTIONS - 4
    for status, headers, body in refused:
        assert (status, headers["retry-after"], headers["connection"]) == (503, "5", "close")
        assert orjson.loads(body) == {"error": "the receiver holds as many request bodies as it may; retry later"}
    assert statuses == [200] * 4
    assert again == [200] * 4
    # Held whole, the 40 bodies would be 80 MiB (measured without the budget: +82 MiB held, +260 MiB at
    # most once they are all parsed and queued at once).
    assert held < BUDGET + 8 * MiB
    assert rss.growth < MEMORY_BOUND
    refused_after = _refusals(metrics_port)
    assert refused_after - refused_before == CONNECTIONS - 4


# -- in one process with the test: what each way of ending a request gives back ---------------------------
LIMIT = 1 * MiB


@pytest.fixture
def raw(landing_url: str) -> Iterator[InProcess]:
    harness = InProcess(
        settings_for(
            landing_url,
            max_body_bytes=LIMIT,
            max_buffered_bytes=LIMIT,
            max_large_bodies=1,
            head_timeout_seconds=1,
            body_timeout_seconds=2,
            idle_timeout_seconds=30,  # a kept-alive connection must give back its claim without being closed
        ),
        "raw",
    )
    yield harness
    harness.close()


async def _answered(reader: Reader) -> int | None:
    try:
        return (await raw_http.read_response(reader))[0]
    except (ConnectionResetError, asyncio.IncompleteReadError):
        return None


def _ended_by(how: str, body: bytes) -> tuple[bytes, bytes, int | None]:
    """What the client sends before, and after, the server holds the body's claim; the answer expected."""
    half = len(body) // 2
    chunked_head = _head(body, chunked=True)
    return {
        "answer": (_head(body) + body[:half], body[half:], 200),
        "forged": (_head(body, forged=True) + body[:half], body[half:], 401),
        "chunked": (chunked_head + _chunk(body[:half]), _chunk(body[half:]) + b"0\r\n\r\n", 200),
        "chunked-too-large": (chunked_head + _chunk(body[:half]), _chunk(body) + b"0\r\n\r\n", 413),
        "malformed": (chunked_head + _chunk(body[:half]), b"zz\r\n", 400),
        "deadline": (_head(body) + body[:half], b"", 408),
        "client-gone": (_head(body) + body[:half], b"", None),
    }[how]


@pytest.mark.parametrize(
    "how", ["answer", "forged", "chunked", "chunked-too-large", "malformed", "deadline", "client-gone"]
)
def test_every_end_of_a_request_gives_back_its_claim(raw: InProcess, how: str) -> None:
    """While the body is held, the budget is full (a small request gets 503); once it ends, a same-size one fits."""
    server = raw.server
    body = _body(LIMIT)
    first, rest, expected = _ended_by(how, body)

    async def scenario() -> tuple[int | None, int, int]:
        reader, writer = await _open(server.port, first)
        await raw_http.until(lambda: server.budget.held > 0 and server.lane_free == 0, 10, "the body to be claimed")
        small = await _post(server.port, _body(1000))
        if how == "client-gone":
            writer.transport.abort()
            status = None
        else:
            writer.write(rest)
            status = await _answered(reader)
        await raw_http.until(lambda: _settled(server), 10, "the claim to be given back")
        again = await _post(server.port, body)
        writer.close()
        return status, small, again

    status, small, again = raw.run(scenario())
    assert status == expected
    # A declared length is claimed whole at the head, though half of it has arrived: the budget is
    # full. A chunked body claims what arrived (512 KiB): a small request still fits beside it.
    assert small == (200 if b"Transfer-Encoding: chunked" in first else 503)
    assert again == 200
    assert _settled(server)


def test_a_chunked_body_claims_its_bytes_as_they_arrive(landing_url: str) -> None:
    harness = InProcess(settings_for(landing_url, max_body_bytes=LIMIT, max_buffered_bytes=LIMIT), "raw")
    server = harness.server
    body = _body(600 * KiB)

    async def scenario() -> tuple[int, dict[str, str], int | None, int]:
        reader, writer = await _open(server.port, _head(body, chunked=True) + _chunk(body))
        await raw_http.until(lambda: server.budget.held == len(body), 10, "the first body to be claimed")
        # The second one fits at first, and is refused when its bytes pass what is left of the budget.
        other_reader, other_writer = await _open(server.port, _head(body, chunked=True))
        for start in range(0, len(body), 64 * KiB):
            other_writer.write(_chunk(body[start : start + 64 * KiB]))
        refused, headers, _ = await raw_http.read_response(other_reader)
        assert await raw_http.closed(other_reader)
        other_writer.close()
        writer.write(b"0\r\n\r\n")
        status = await _answered(reader)
        writer.close()
        await raw_http.until(lambda: _settled(server), 10, "the claims to be given back")
        reader, writer = await _open(server.port, _head(body, chunked=True) + _chunk(body) + b"0\r\n\r\n")
        again = (await raw_http.read_response(reader))[0]
        writer.close()
        return refused, headers, status, again

    try:
        refused, headers, status, again = harness.run(scenario())
    finally:
        harness.close()
    assert (refused, headers["retry-after"], status, again) == (503, "5", 200, 200)


# -- the lane: large bodies read a few at a time, small ones never wait for it --------------------------
def test_a_large_body_waits_for_its_place_and_small_ones_do_not(landing_url: str) -> None:
    harness = InProcess(
        settings_for(landing_url, max_body_bytes=LIMIT, max_buffered_bytes=4 * LIMIT, max_large_bodies=1), "raw"
    )
    server = harness.server
    first, second = _body(LARGE_BODY_BYTES + 100 * KiB), _body(LARGE_BODY_BYTES + 100 * KiB)

    async def scenario() -> tuple[bool, int, int, int, int]:
        reader, writer = await _open(server.port, _head(first) + first[:100_000])
        await raw_http.until(lambda: server.lane_free == 0, 10, "the first to take the place")
        waiting_reader, waiting_writer = await _open(server.port, _head(second) + second)  # all of it, at once
        await raw_http.until(lambda: len(server.lane_waiting) == 1, 10, "the second to wait")
        held = await _no_answer_within(waiting_reader, 0.5)
        small = await _post(server.port, _body(2000))  # answered while both large ones are in progress
        writer.write(first[100_000:])
        status = (await raw_http.read_response(reader))[0]
        waited = (await raw_http.read_response(waiting_reader))[0]  # its turn came when the first ended
        for stream in (writer, waiting_writer):
            stream.close()
        await raw_http.until(lambda: _settled(server), 10, "the place to be free")
        return held, small, status, waited, server.lane_free

    try:
        held, small, status, waited, free = harness.run(scenario())
    finally:
        harness.close()
    assert held
    assert (small, status, waited, free) == (200, 200, 200, 1)


def test_signer_fed_in_pieces_matches_the_whole() -> None:
    body = _body(100 * KiB)
    signature = sign(body, b"key").encode()
    signer = Signer(b"key")
    for start in range(0, len(body), 7000):
        signer.update(body[start : start + 7000])
    assert signer.matches(signature)
    assert signer.matches(b"  " + signature + b"==")  # padding and spaces, as verify() allows
    assert not signer.matches(sign(body + b" ", b"key").encode())
    assert not signer.matches(None)


def test_budget_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from knit_provider.webhook.__main__ import _settings, build_parser

    monkeypatch.setenv("KNIT_WEBHOOK_MAX_BUFFERED_BYTES", str(32 * MiB))
    monkeypatch.setenv("KNIT_WEBHOOK_COMPACT_SIGNATURE_MAX_BYTES", "1000")
    args = ["--database-url", "postgresql://x/y", "--secret", "k"]
    settings = _settings(build_parser().parse_args(args))
    assert (settings.max_buffered_bytes, settings.max_large_bodies, settings.compact_signature_max_bytes) == (
        32 * MiB,
        4,
        1000,
    )
    flags = ["--max-buffered-bytes", str(16 * MiB), "--max-large-bodies", "2", "--compact-signature-max-bytes", "0"]
    settings = _settings(build_parser().parse_args(args + flags))
    assert (settings.max_buffered_bytes, settings.max_large_bodies, settings.compact_signature_max_bytes) == (
        16 * MiB,
        2,
        0,
    )


# -- the write queue: the last term of the bound -------------------------------------------------------
def test_a_batch_being_written_still_counts_against_the_queue(
    landing_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue's bound holds bodies waiting for their commit and bodies in it: both are held in memory."""
    import psycopg2

    from knit_provider.webhook import writer as writer_module

    first, second = orjson.dumps(event()), orjson.dumps(event())
    monkeypatch.setattr(writer_module, "MAX_QUEUED_BYTES", int(1.5 * sys.getsizeof(first.decode())))
    harness = InProcess(settings_for(landing_url, writers=1), "raw")
    locker = psycopg2.connect(landing_url)

    async def scenario() -> tuple[int, dict[str, str], int, int]:
        with locker.cursor() as cur:  # the first event's commit waits for this lock: its batch is in flight
            cur.execute("LOCK TABLE knit_landing.events IN ACCESS EXCLUSIVE MODE")
        landing = asyncio.ensure_future(_post(harness.server.port, first))
        await raw_http.until(lambda: _waiting_for_locks(landing_url) > 0, 10, "the first batch to be in flight")
        refused, headers, _ = await _answer(harness.server.port, second)
        locker.rollback()
        landed = await landing
        again = await _post(harness.server.port, second)
        return refused, headers, landed, again

    try:
        refused, headers, landed, again = harness.run(scenario())
    finally:
        locker.close()
        harness.close()
    assert (refused, headers["retry-after"], landed, again) == (503, "5", 200, 200)


def test_the_queue_counts_the_memory_of_a_body_s_text(landing_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One character outside the BMP makes each of the text's characters take 4 bytes: that is what is held."""
    from knit_provider.webhook import writer as writer_module

    ascii_body, wide_body = orjson.dumps(event(note="x" * 10_000)), orjson.dumps(event(note="x" * 9_999 + "😀"))
    assert len(wide_body.decode()) == len(ascii_body)  # as many characters, four times the memory
    monkeypatch.setattr(writer_module, "MAX_QUEUED_BYTES", 2 * len(ascii_body))
    harness = InProcess(settings_for(landing_url, writers=1), "raw")
    try:
        wide, ascii_only = (
            harness.run(_post(harness.server.port, wide_body)),
            harness.run(_post(harness.server.port, ascii_body)),
        )
    finally:
        harness.close()
    assert (wide, ascii_only) == (503, 200)


async def _answer(port: int, body: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await _open(port, _head(body) + body)
    try:
        return await raw_http.read_response(reader)
    finally:
        writer.close()


def _waiting_for_locks(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM pg_locks WHERE NOT granted"))


# -- the mounted app under uvicorn: the same budget, and bodies hashed as they arrive ---------------------
MOUNTED_CONNECTIONS = 10


def test_mounted_app_keeps_bodies_within_the_budget(landing_url: str) -> None:
    """Under uvicorn (as in Airflow's API server), 10 connections send all but the last byte of a 1 MiB body:
    2 fit in the 2 MiB budget, 8 get 503 with ``Retry-After`` before their bodies are read; then a forged
    body gets 401, and everything claimed is given back."""
    import uvicorn

    from knit_provider.webhook.app import create_app

    app = create_app(settings_for(landing_url, max_body_bytes=LIMIT, max_buffered_bytes=2 * LIMIT))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, http="httptools", log_level="warning"))
    bodies = [_body(LIMIT) for _ in range(MOUNTED_CONNECTIONS)]

    async def scenario() -> tuple[list[Any], int, list[int], list[int], int, int]:
        serving = asyncio.ensure_future(server.serve())
        await raw_http.until(lambda: server.started, 30, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            connections = [await _open(port, _head(body) + body[:-1]) for body in bodies]
            answers = [asyncio.ensure_future(raw_http.read_response(reader)) for reader, _ in connections]
            await raw_http.until(
                lambda: sum(answer.done() for answer in answers) >= MOUNTED_CONNECTIONS - 2, 30, "the refusals"
            )
            refused = [answer.result() for answer in answers if answer.done()]
            held = app.state.endpoints.budget.held
            admitted = [i for i, answer in enumerate(answers) if not answer.done()]
            for i in admitted:
                connections[i][1].write(bodies[i][-1:])
            statuses = [(await answers[i])[0] for i in admitted]
            for _, writer in connections:
                writer.close()
            again = list(await asyncio.gather(*(_post(port, _body(LIMIT)) for _ in range(2))))
            forged = _body(LIMIT)
            reader, writer = await _open(port, _head(forged, forged=True) + forged)
            status = (await raw_http.read_response(reader))[0]
            writer.close()
            return refused, held, statuses, again, status, app.state.endpoints.budget.held
        finally:
            server.should_exit = True
            await serving

    refused, held, statuses, again, forged, left = asyncio.run(scenario())
    assert len(refused) == MOUNTED_CONNECTIONS - 2
    for status, headers, body in refused:
        assert (status, headers["retry-after"]) == (503, "5")
        assert orjson.loads(body) == {"error": "the receiver holds as many request bodies as it may; retry later"}
    assert held == 2 * len(bodies[0])  # the two admitted bodies' declared lengths, nothing else
    assert statuses == [200, 200]
    assert again == [200, 200]  # what they held was given back
    assert forged == 401
    assert left == 0
