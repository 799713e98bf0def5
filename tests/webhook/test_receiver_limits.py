"""Hostile clients against the standalone receiver process: every limit answers, cuts the connection and holds memory.

Each case sends what a stranger could (endless headers, URLs, header values and trailers, trickled
heads and bodies, more connections than allowed) over a real socket, and checks the answer, that
the connection ends, how long that took and how much the receiver's resident memory grew meanwhile.
The receiver runs with short deadlines (1 s head, 2 s body, 1 s idle) so that the cases are quick.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psutil
import pytest
import raw_http
from prometheus_client import REGISTRY
from raw_http import MiB
from receiver_helpers import InProcess, ReceiverProcess, event, settings_for, signed

from knit_provider.webhook.app import create_app

MAX_BODY = 100_000
HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
IDLE_TIMEOUT = 1.0
# A cut is checked four times per shortest deadline; this much more is scheduling on a busy machine.
LATE = 1.5
MEMORY_BOUND = 32 * MiB


@pytest.fixture(scope="module")
def receiver(landing_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(
        landing_url,
        tmp_path_factory.mktemp("limits") / "receiver.log",
        "--writers",
        "1",
        "--max-body-bytes",
        str(MAX_BODY),
        "--head-timeout",
        str(HEAD_TIMEOUT),
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--idle-timeout",
        str(IDLE_TIMEOUT),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def _still_serves(receiver: ReceiverProcess) -> None:
    body = orjson.dumps(event())
    assert httpx.post(receiver.url + "/webhook", content=body, headers=signed(body), timeout=10).status_code == 200


_POST = b"POST /webhook HTTP/1.1\r\nHost: test\r\n"


@pytest.mark.parametrize(
    ("prefix", "filler", "status", "error"),
    [
        pytest.param(_POST, b"X-Pad: a\r\n", 431, "more than 100 headers", id="endless-headers"),
        pytest.param(
            _POST,
            b"X-Pad: " + b"a" * 1000 + b"\r\n",
            431,
            "request head larger than 65536 bytes",
            id="endless-large-headers",
        ),
        pytest.param(
            _POST + b"X-Big: " + b"a" * 9000 + b"\r\n",
            b"X-Pad: a\r\n",
            431,
            "a header is larger than 8192 bytes",
            id="one-header-too-large",
        ),
        pytest.param(_POST + b"X-Long: ", b"a", 431, "request head larger than 65536 bytes", id="endless-header-value"),
        pytest.param(_POST, b"a", 431, "request head larger than 65536 bytes", id="endless-header-name"),
        pytest.param(b"GET /", b"a", 414, "URL longer than 8192 bytes", id="endless-url"),
        pytest.param(
            _POST + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: ",
            b"a",
            431,
            "chunk framing and trailers larger than 65536 bytes plus the body",
            id="endless-trailer",
        ),
        pytest.param(
            _POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;extension=",
            b"a",
            431,
            "chunk framing and trailers larger than 65536 bytes plus the body",
            id="endless-chunk-extension",
        ),
    ],
)
def test_endless_request_is_answered_and_cut_with_bounded_memory(
    receiver: ReceiverProcess, prefix: bytes, filler: bytes, status: int, error: str
) -> None:
    cut = asyncio.run(raw_http.flood(receiver.port, prefix, filler, pid=receiver.proc.pid, most=64 * MiB))
    print(
        f"flood: {cut.status} after {cut.sent / 1024:.0f} KiB sent, cut in {cut.seconds * 1000:.0f} ms, "
        f"receiver RSS +{cut.peak_rss_growth / MiB:.1f} MiB"
    )
    assert (cut.status, orjson.loads(cut.body)) == (status, {"error": error})
    # What the client sent includes what waits in the kernel's socket buffers (megabytes on loopback),
    # so it only shows that the cut came before all was sent; the receiver's memory is the measure.
    assert cut.sent < 64 * MiB
    assert cut.peak_rss_growth < MEMORY_BOUND
    assert cut.seconds < 5
    _still_serves(receiver)


def test_trickled_head_is_cut_at_its_deadline(receiver: ReceiverProcess) -> None:
    """One byte every 0.1 s never lets the head complete; the deadline counts from the first byte."""
    cut = asyncio.run(
        raw_http.trickle(
            receiver.port, b"POST /webhook HTTP/1.1\r\n", b"X-Slow: " + b"a" * 1000, 0.1, pid=receiver.proc.pid
        )
    )
    print(
        f"trickled head: {cut.status} after {cut.sent} bytes, cut in {cut.seconds:.2f} s, "
        f"receiver RSS +{cut.peak_rss_growth / MiB:.1f} MiB"
    )
    assert (cut.status, orjson.loads(cut.body)) == (408, {"error": "request head not complete within 1 s"})
    assert HEAD_TIMEOUT <= cut.seconds < HEAD_TIMEOUT + LATE
    assert cut.peak_rss_growth < MEMORY_BOUND
    _still_serves(receiver)


def test_trickled_body_is_cut_at_its_deadline(receiver: ReceiverProcess) -> None:
    body = orjson.dumps(event()).ljust(1000)
    head = "".join(f"{name}: {value}\r\n" for name, value in signed(body).items())
    prefix = _POST + f"Content-Length: {len(body)}\r\n{head}\r\n".encode()
    cut = asyncio.run(raw_http.trickle(receiver.port, prefix, body, 0.1, pid=receiver.proc.pid))
    print(
        f"trickled body: {cut.status} after {cut.sent} bytes, cut in {cut.seconds:.2f} s, "
        f"receiver RSS +{cut.peak_rss_growth / MiB:.1f} MiB"
    )
    assert (cut.status, orjson.loads(cut.body)) == (408, {"error": "request not complete within 2 s"})
    assert BODY_TIMEOUT <= cut.seconds < BODY_TIMEOUT + LATE
    assert cut.peak_rss_growth < MEMORY_BOUND
    _still_serves(receiver)


def test_bytes_between_requests_do_not_keep_an_idle_connection(receiver: ReceiverProcess) -> None:
    """Empty lines before a request are allowed by HTTP and start none: idleness is not reset by them."""
    cut = asyncio.run(raw_http.trickle(receiver.port, b"", b"\r\n", 0.1, pid=receiver.proc.pid))
    print(f"idle with empty lines: closed after {cut.sent} bytes in {cut.seconds:.2f} s")
    assert cut.status is None  # nothing was asked, nothing is answered: the connection just ends
    assert IDLE_TIMEOUT <= cut.seconds < IDLE_TIMEOUT + LATE


def test_connections_beyond_the_cap_are_refused_without_growing(landing_url: str) -> None:
    """With every place held by a request in progress (none idle to close), newcomers get 503 and are closed."""
    harness = InProcess(settings_for(landing_url, max_connections=20), "raw")
    server = harness.server
    live = raw_http.get("/health/live")
    begun, rest = live[:-2], live[-2:]  # the head's last line is not sent yet: a request in progress

    async def held() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(begun)
        return reader, writer

    async def refused() -> int | None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(live)
            status = (await raw_http.read_response(reader))[0]
            assert await raw_http.closed(reader)
            return status
        except (ConnectionResetError, asyncio.IncompleteReadError):
            return None  # reset before the answer was read: refused just the same
        finally:
            writer.close()

    async def scenario() -> tuple[set[int | None], int, float, int]:
        connections = [await held() for _ in range(20)]
        await raw_http.until(lambda: not server.idle and len(server.connections) == 20, 10, "requests in progress")
        before = psutil.Process().memory_info().rss
        started = time.monotonic()
        statuses: set[int | None] = set()
        most = 0
        for _ in range(10):  # 500 more, 50 at a time
            statuses |= set(await asyncio.gather(*(refused() for _ in range(50))))
            most = max(most, len(server.connections))
        seconds = time.monotonic() - started
        growth = psutil.Process().memory_info().rss - before
        for reader, writer in connections:  # none of them was closed for the newcomers: each is answered
            writer.write(rest)
            statuses.add((await raw_http.read_response(reader))[0])
        connections.pop()[1].close()
        await raw_http.until(lambda: len(server.connections) == 19, 10, "the closed connection to be let go")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(live)
        status = (await raw_http.read_response(reader))[0]
        for _, held_writer in [*connections, (reader, writer)]:
            held_writer.close()
        return statuses | {status}, most, seconds, growth

    refusals = REGISTRY.get_sample_value("knit_webhook_rejections_total", {"reason": "connections"})
    idle_closed = REGISTRY.get_sample_value("knit_webhook_idle_connections_closed_total")
    try:
        statuses, most, seconds, growth = harness.run(scenario())
    finally:
        harness.close()
    print(f"500 connections over the cap: refused in {seconds:.2f} s, RSS +{growth / MiB:.1f} MiB")
    assert most == 20
    assert REGISTRY.get_sample_value("knit_webhook_rejections_total", {"reason": "connections"}) == refusals + 500
    assert REGISTRY.get_sample_value("knit_webhook_idle_connections_closed_total") == idle_closed
    assert statuses <= {503, None, 200}
    assert {503, 200} <= statuses
    assert growth < MEMORY_BOUND


def test_mounted_app_cuts_a_trickled_body(landing_url: str) -> None:
    """Under uvicorn (as in Airflow's API server) the app bounds the time it waits for a body."""
    import uvicorn

    app = create_app(settings_for(landing_url, head_timeout_seconds=1, body_timeout_seconds=1))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, http="httptools", log_level="warning"))
    body = orjson.dumps(event()).ljust(1000)
    head = "".join(f"{name}: {value}\r\n" for name, value in signed(body).items())
    prefix = _POST + f"Content-Length: {len(body)}\r\n{head}\r\n".encode()

    async def scenario() -> raw_http.Cut:
        serving = asyncio.ensure_future(server.serve())
        await raw_http.until(lambda: server.started, 30, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            return await raw_http.trickle(port, prefix, body, 0.1)
        finally:
            server.should_exit = True
            await serving

    cut = asyncio.run(scenario())
    assert (cut.status, orjson.loads(cut.body)) == (408, {"error": "request not complete within 1 s"})
    assert 1 <= cut.seconds < 1 + LATE


def test_client_that_never_reads_its_answers_is_dropped(landing_url: str) -> None:
    """Answers pile up unread: after the idle timeout and the linger the connection is aborted, not kept."""
    harness = InProcess(
        settings_for(landing_url, idle_timeout_seconds=0.5, head_timeout_seconds=0.5, body_timeout_seconds=0.5), "raw"
    )
    server = harness.server

    async def scenario() -> tuple[int, float]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds few answers for us
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        _, writer = await asyncio.open_connection(sock=sock)
        writer.write(raw_http.get("/health/live") * 50_000)  # far more answers than socket buffers hold
        await raw_http.until(lambda: len(server.connections) == 1, 10, "the connection")
        connection = next(iter(server.connections))
        await raw_http.until(lambda: connection.transport.get_write_buffer_size() > 0, 10, "unread answers")
        backlog = connection.transport.get_write_buffer_size()
        started = time.monotonic()
        await raw_http.until(lambda: not server.connections, 10, "the connection to be dropped")
        writer.transport.abort()
        return backlog, time.monotonic() - started

    try:
        backlog, seconds = harness.run(scenario())
    finally:
        harness.close()
    assert backlog > 0
    assert seconds < 0.5 + 1 + LATE  # idle timeout, then the linger


# -- settings ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_headers": 0}, "max_headers must be at least 1, got 0"),
        ({"max_connections": -5}, "max_connections must be at least 1, got -5"),
        ({"max_connections_per_address": 0}, "max_connections_per_address must be at least 1, got 0"),
        ({"idle_timeout_seconds": 0}, "idle_timeout_seconds must be more than 0 seconds, got 0"),
        ({"head_timeout_seconds": float("nan")}, "head_timeout_seconds must be more than 0 seconds, got nan"),
        ({"max_header_bytes": 100_000}, r"max_header_bytes \(100000\) must not exceed max_head_bytes \(65536\)"),
        ({"max_url_bytes": 70_000}, r"max_url_bytes \(70000\) must not exceed max_head_bytes \(65536\)"),
        ({"head_timeout_seconds": 90}, r"body_timeout_seconds \(60.0\) must be at least head_timeout_seconds \(90\)"),
        ({"metrics_port": 70_000}, r"metrics_port must be a TCP port \(0-65535\), got 70000"),
        (
            {"max_buffered_bytes": 1_000_000},
            r"max_buffered_bytes \(1000000\) must be at least max_body_bytes \(5242880\)",
        ),
        ({"max_large_bodies": 0}, "max_large_bodies must be at least 1, got 0"),
    ],
)
def test_limits_are_validated(values: dict[str, Any], message: str) -> None:
    from knit_provider.webhook.settings import ReceiverSettings, SettingsError

    with pytest.raises(SettingsError, match=message):
        ReceiverSettings(database_url="postgresql://x/y", secret=b"k", **values)


def test_limits_come_from_the_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from knit_provider.webhook.__main__ import _settings, build_parser
    from knit_provider.webhook.settings import SettingsError

    monkeypatch.setenv("KNIT_WEBHOOK_MAX_HEADERS", "7")
    monkeypatch.setenv("KNIT_WEBHOOK_HEAD_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("KNIT_WEBHOOK_METRICS_PORT", "9000")
    args = build_parser().parse_args(
        [
            "--database-url",
            "postgresql://x/y",
            "--secret",
            "k",
            "--head-timeout",
            "2",
            "--max-connections",
            "10",
            "--max-connections-per-address",
            "4",
            "--idle-timeout",
            "3",
            "--metrics-host",
            "0.0.0.0",
        ]
    )
    settings = _settings(args)
    assert (settings.max_headers, settings.head_timeout_seconds, settings.max_connections) == (7, 2.0, 10)
    assert settings.max_connections_per_address == 4
    monkeypatch.setenv("KNIT_WEBHOOK_MAX_CONNECTIONS_PER_ADDRESS", "3")
    assert (
        _settings(
            build_parser().parse_args(["--database-url", "postgresql://x/y", "--secret", "k"])
        ).max_connections_per_address
        == 3
    )
    assert (settings.idle_timeout_seconds, settings.metrics_port, settings.metrics_host) == (3.0, 9000, "0.0.0.0")
    monkeypatch.setenv("KNIT_WEBHOOK_MAX_URL_BYTES", "8k")
    with pytest.raises(SettingsError, match="KNIT_WEBHOOK_MAX_URL_BYTES='8k' is not a number"):
        _settings(args)
