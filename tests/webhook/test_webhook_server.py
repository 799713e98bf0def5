"""The standalone HTTP server over real sockets: keep-alive, pipelining, chunked bodies, limits, stop, workers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psycopg2
import pytest
from receiver_helpers import InProcess, ReceiverProcess, event, landed_ids, scalar, settings_for, signed, wait_until

Reader = asyncio.StreamReader


@pytest.fixture
def raw(landing_url: str) -> Iterator[InProcess]:
    harness = InProcess(settings_for(landing_url, max_body_bytes=10_000), "raw")
    yield harness
    harness.close()


def _request(body: bytes, *extra: str, method: str = "POST", path: str = "/webhook") -> bytes:
    headers = [f"{method} {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *extra]
    headers += [f"{name}: {value}" for name, value in signed(body).items()]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


async def _response(reader: Reader) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def _closed(reader: Reader) -> bool:
    return await asyncio.wait_for(reader.read(1), 20) == b""


def test_keep_alive_and_pipelined_requests_are_answered_in_order(raw: InProcess, landing_url: str) -> None:
    documents = [event() for _ in range(5)]

    async def scenario() -> list[tuple[int, dict[str, str], bytes]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", raw.server.port)
        # All at once in one write: the answers must come back in the same order.
        writer.write(
            b"".join(_request(orjson.dumps(d)) for d in documents[:3])
            + _request(b"[]")
            + _request(b"", method="GET", path="/health")
        )
        answers = [await _response(reader) for _ in range(5)]
        writer.write(_request(orjson.dumps(documents[3])))  # the same connection, kept alive
        answers.append(await _response(reader))
        writer.close()
        return answers

    answers = raw.run(scenario())
    assert [status for status, _, _ in answers] == [200, 200, 200, 200, 200, 200]
    assert orjson.loads(answers[3][2])["status"] == "dead_letter"  # signed but not an event: kept, never bounced
    assert orjson.loads(answers[4][2]) == {"status": "ok"}
    assert all("connection" not in headers for _, headers, _ in answers)
    ids = [d["eventId"] for d in documents[:4]]
    assert landed_ids(landing_url, ids) == set(ids)


def test_chunked_body_lands(raw: InProcess, landing_url: str) -> None:
    document = event()
    body = orjson.dumps(document)
    headers = {**signed(body), "Transfer-Encoding": "chunked"}

    async def chunks() -> Iterator[bytes]:  # type: ignore[misc]
        for start in range(0, len(body), 50):
            yield body[start : start + 50]

    response = raw.run(raw.client.post("/webhook", content=chunks(), headers=headers))
    assert response.status_code == 200
    assert landed_ids(landing_url, [document["eventId"]]) == {document["eventId"]}


def test_streamed_body_over_the_limit_is_413_while_it_streams(raw: InProcess) -> None:
    async def scenario() -> tuple[int, int, bool]:
        reader, writer = await asyncio.open_connection("127.0.0.1", raw.server.port)
        writer.write(
            b"POST /webhook HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            b"X-Knit-Signature: irrelevant\r\n\r\n"
        )
        sent = 0
        answer = asyncio.ensure_future(_response(reader))
        while not answer.done() and sent < 10_000:  # 10 MB if it were all read
            writer.write(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
            await writer.drain()
            sent += 1
            await asyncio.wait((answer,), timeout=0.01)
        status, headers, _ = await answer
        closed = await _closed(reader)
        writer.close()
        return status, sent, closed and headers.get("connection") == "close"

    status, sent, closed = raw.run(scenario())
    assert status == 413
    assert sent < 100
    assert closed


def test_content_length_over_the_limit_is_413_before_the_body(raw: InProcess) -> None:
    async def scenario() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", raw.server.port)
        writer.write(b"POST /webhook HTTP/1.1\r\nHost: test\r\nContent-Length: 10000001\r\n\r\n")  # no body sent
        status, _, _ = await _response(reader)
        writer.close()
        return status

    assert raw.run(scenario()) == 413


@pytest.mark.parametrize(
    "request_bytes", [b"NOT HTTP AT ALL\r\n\r\n", b"POST /webhook HTTP/1.1\r\nContent-Length: x\r\n\r\n"]
)
def test_malformed_http_is_400_and_closed(raw: InProcess, request_bytes: bytes) -> None:
    async def scenario() -> tuple[int, bytes, bool]:
        reader, writer = await asyncio.open_connection("127.0.0.1", raw.server.port)
        writer.write(request_bytes)
        status, _, body = await _response(reader)
        closed = await _closed(reader)
        writer.close()
        return status, body, closed

    status, body, closed = raw.run(scenario())
    assert (status, orjson.loads(body)) == (400, {"error": "malformed HTTP request"})
    assert closed


def test_http_1_0_is_answered_then_closed_and_100_continue_is_honoured(raw: InProcess) -> None:
    body = orjson.dumps(event())

    async def scenario() -> tuple[int, bool, bytes, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", raw.server.port)
        writer.write(_request(body).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        old_status, _, _ = await _response(reader)
        old_closed = await _closed(reader)
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", raw.server.port)
        head, rest = _request(orjson.dumps(event()), "Expect: 100-continue").split(b"\r\n\r\n", 1)
        writer.write(head + b"\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        writer.write(rest)
        status, _, _ = await _response(reader)
        writer.close()
        return old_status, old_closed, interim, status

    old_status, old_closed, interim, status = raw.run(scenario())
    assert (old_status, old_closed) == (200, True)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert status == 200


def test_idle_connection_is_closed(landing_url: str) -> None:
    harness = InProcess(settings_for(landing_url, idle_timeout_seconds=0.5), "raw")
    try:

        async def scenario() -> tuple[int, bool]:
            reader, writer = await asyncio.open_connection("127.0.0.1", harness.server.port)
            writer.write(_request(orjson.dumps(event())))
            status, _, _ = await _response(reader)
            closed = await _closed(reader)  # nothing more is sent: the server lets go of the connection
            writer.close()
            return status, closed

        assert harness.run(scenario()) == (200, True)
    finally:
        harness.close()


def test_stop_answers_the_request_waiting_for_its_commit(landing_url: str) -> None:
    harness = InProcess(settings_for(landing_url, writers=1), "raw")
    locker = psycopg2.connect(landing_url)
    try:
        assert harness.post_event(event()).status_code == 200  # the writer is connected
        with locker.cursor() as cur:  # the next batch waits for this lock
            cur.execute("LOCK TABLE knit_landing.events IN ACCESS EXCLUSIVE MODE")

        async def scenario() -> tuple[int, str]:
            reader, writer = await asyncio.open_connection("127.0.0.1", harness.server.port)
            writer.write(_request(orjson.dumps(event())))
            for _ in range(1000):
                if scalar(
                    landing_url,
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'knit_landing.events'::regclass",
                ):
                    break
                await asyncio.sleep(0.02)
            stopping = asyncio.ensure_future(harness.server.stop(20))
            await asyncio.sleep(0)  # the stop begins (no new connections) while the commit still waits
            assert harness.server.stopping
            assert not stopping.done()
            locker.rollback()
            status, headers, _ = await _response(reader)
            await stopping
            writer.close()
            return status, headers.get("connection", "")

        assert harness.run(scenario()) == (200, "close")
    finally:
        locker.close()
        harness.close()


def _workers(pid: int) -> list[int]:
    """The worker processes of the supervisor ``pid`` (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_worker_processes_share_the_port_and_are_restarted(landing_url: str, tmp_path: Path) -> None:
    receiver = ReceiverProcess(landing_url, tmp_path / "receiver.log", "--workers", "2", "--writers", "1")
    try:
        receiver.wait_ready()
        wait_until(lambda: len(_workers(receiver.proc.pid)) >= 2, 30, "two worker processes")
        workers = _workers(receiver.proc.pid)
        documents = [event() for _ in range(200)]

        async def post_all() -> list[int]:
            limits = httpx.Limits(max_connections=32)
            async with httpx.AsyncClient(base_url=receiver.url, limits=limits, timeout=30) as client:
                responses = await asyncio.gather(
                    *(
                        client.post("/webhook", content=orjson.dumps(d), headers=signed(orjson.dumps(d)))
                        for d in documents
                    )
                )
            return [r.status_code for r in responses]

        assert asyncio.run(post_all()) == [200] * len(documents)
        ids = [d["eventId"] for d in documents]
        assert landed_ids(landing_url, ids) == set(ids)
        assert (
            scalar(
                landing_url, "SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE application_name = 'knit-webhook'"
            )
            >= 2
        )

        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: len(set(_workers(receiver.proc.pid)) - set(workers)) == 1, 30, "a new worker")
        receiver.wait_ready()
        alive = _workers(receiver.proc.pid)
        receiver.proc.send_signal(signal.SIGTERM)  # a graceful stop of every worker, then of the supervisor
        assert receiver.proc.wait(30) == 0
        assert not [pid for pid in alive if Path(f"/proc/{pid}").exists()]
    finally:
        receiver.stop()
