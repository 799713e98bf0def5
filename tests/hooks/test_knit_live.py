"""KnitHook over real sockets: a local HTTP server answering like Knit, real requests and urllib3.

These check what mocks cannot: the bytes on the wire, urllib3's own DEBUG logging, and how each real
failure of ``sync.start`` is classified: a refused connection or Knit's 429 (not acted on: retried), a
read timeout, a connection cut or reset after the request was sent, a 5xx (outcome unknown: asked of
``recover``, never resent blindly).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from knit_hook_fakes import API_KEY, WEBHOOK_SECRET

from knit_provider.exceptions import KnitTransientError


class _Knit(BaseHTTPRequestHandler):
    """Answers each POST with the next scripted reply; records what it received."""

    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
        status, payload, delay = self.server.replies.pop(0) if self.server.replies else (200, _OK, 0.0)
        if status in (CUT, RESET):
            # The request has arrived whole; the connection ends without an answer (FIN, or RST when reset).
            if status == RESET:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if delay:
            # Hold the answer so the client's read timeout fires; released when the test ends.
            self.server.release.wait(delay)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Knit-Execution-Id", f"ex_{len(self.server.received)}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting, as the timeout test intends

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    received: list[dict[str, Any]]
    replies: list[tuple[int, dict[str, Any], float]]
    release: threading.Event


_OK = {"success": True, "data": {"syncJobId": "sj_live", "syncRunId": "sr_live"}}
# Scripted "statuses" that answer nothing: the connection is closed, or reset, once the request is read.
CUT = -1
RESET = -2


@pytest.fixture
def knit_server() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Knit)
    server.received, server.replies, server.release = [], [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def _start(hook: Any, **kwargs: Any) -> Any:
    return hook.start_sync("ats_applications", ["application_info"], integration_id="int_live", **kwargs)


def test_start_sync_over_the_wire_logs_no_secret_even_at_debug(make_hook, knit_server, all_logs):
    knit_server.replies = [(429, {"success": False, "error": {"msg": "warming up"}}, 0.0)]
    hook = make_hook({"host": _url(knit_server), "extra": {"webhook_secret": WEBHOOK_SECRET}})

    started = _start(hook)

    assert (started.sync_job_id, started.sync_run_id, started.execution_id) == ("sj_live", "sr_live", "ex_2")
    assert len(knit_server.received) == 2
    request = knit_server.received[-1]
    assert request["path"] == "/v1.0/sync.start"
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert request["headers"]["X-Knit-Integration-Id"] == "int_live"
    assert request["body"]["dataType"] == "ats_applications"
    assert WEBHOOK_SECRET not in json.dumps(request["headers"])
    logged = all_logs()
    assert "Starting new HTTP connection" in logged, "urllib3's DEBUG lines must be captured for this to test"
    assert "X-Knit-Execution-Id: ex_2" in logged
    assert API_KEY not in logged
    assert WEBHOOK_SECRET not in logged


def test_refused_connection_is_transient_and_names_no_secret(make_hook, clock):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    hook = make_hook({"host": f"http://127.0.0.1:{closed_port}"}, max_attempts=3)

    with pytest.raises(KnitTransientError) as info:
        _start(hook)

    assert info.value.attempts == 3
    assert len(clock.sleeps) == 2
    assert "ConnectionError" in str(info.value)
    assert API_KEY not in str(info.value)


def _never(first_attempt: Any) -> Any:
    raise AssertionError("recover must not be asked when Knit certainly did not act on the request")


def test_a_read_timeout_after_sending_is_not_resent_without_recover(make_hook, knit_server):
    knit_server.replies = [(200, _OK, 30.0)]
    hook = make_hook({"host": _url(knit_server)}, timeout=0.3)

    with pytest.raises(KnitTransientError) as info:
        _start(hook)

    assert len(knit_server.received) == 1, "Knit may have started the sync: a second sync.start would start another"
    assert "the outcome is unknown (ReadTimeout" in str(info.value)
    assert "it is not sent again" in str(info.value)


def test_a_read_timeout_asks_recover_and_attaches_to_the_run_it_finds(make_hook, knit_server, clock, all_logs):
    from knit_provider.hooks.knit import SyncStarted

    knit_server.replies = [(200, _OK, 30.0)]
    hook = make_hook({"host": _url(knit_server)}, timeout=0.3)
    found = SyncStarted(sync_job_id="sj_seen", sync_run_id="sr_seen", execution_id=None, integration_id="int_live")
    asked: list[Any] = []

    def recover(first_attempt: Any) -> SyncStarted:
        asked.append(first_attempt)
        return found

    assert _start(hook, recover=recover) == found
    assert asked == [clock.start], "recover is given the time of the first attempt"
    assert len(knit_server.received) == 1
    assert "attached to run sr_seen (job sj_seen) that began after the first attempt; sync.start not sent again" in (
        all_logs()
    )


@pytest.mark.parametrize("ending", [CUT, RESET], ids=["closed", "reset"])
def test_a_connection_ended_after_sending_asks_recover_before_sending_again(make_hook, knit_server, ending):
    knit_server.replies = [(ending, {}, 0.0)]
    hook = make_hook({"host": _url(knit_server)})
    asked: list[Any] = []

    started = _start(hook, recover=lambda first: asked.append(first))  # finds nothing: send again

    assert started.sync_job_id == "sj_live"
    assert len(asked) == 1
    assert len(knit_server.received) == 2


@pytest.mark.parametrize("ending", [CUT, RESET], ids=["closed", "reset"])
def test_a_connection_ended_after_sending_is_not_resent_without_recover(make_hook, knit_server, ending):
    knit_server.replies = [(ending, {}, 0.0)]
    with pytest.raises(KnitTransientError, match="the outcome is unknown"):
        _start(make_hook({"host": _url(knit_server)}))
    assert len(knit_server.received) == 1


def test_a_5xx_asks_recover_and_is_sent_again_only_when_no_run_began(make_hook, knit_server):
    knit_server.replies = [(502, {"success": False, "error": {"msg": "bad gateway"}}, 0.0)]
    asked: list[Any] = []

    assert _start(make_hook({"host": _url(knit_server)}), recover=lambda first: asked.append(first)).sync_job_id == (
        "sj_live"
    )
    assert (len(asked), len(knit_server.received)) == (1, 2)

    knit_server.received.clear()
    knit_server.replies = [(503, {"success": False, "error": {"msg": "down"}}, 0.0)]
    with pytest.raises(KnitTransientError, match=r"the outcome is unknown \(HTTP 503"):
        _start(make_hook({"host": _url(knit_server)}))
    assert len(knit_server.received) == 1


def test_knits_429_is_resent_without_asking_recover(make_hook, knit_server, clock):
    knit_server.replies = [(429, {"success": False, "error": {"msg": "slow down"}}, 0.0)] * 2

    assert _start(make_hook({"host": _url(knit_server)}), recover=_never).sync_job_id == "sj_live"
    assert len(knit_server.received) == 3
    assert len(clock.sleeps) == 2


def test_a_refused_connection_is_retried_without_asking_recover(make_hook, clock):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    hook = make_hook({"host": f"http://127.0.0.1:{closed_port}"}, max_attempts=3)

    with pytest.raises(KnitTransientError) as info:
        _start(hook, recover=_never)

    assert info.value.attempts == 3, "never sent: every attempt is safe"
    assert "still failing after 3 attempts" in str(info.value)


def test_sync_update_is_retried_after_a_read_timeout(make_hook, knit_server):
    knit_server.replies = [(200, {"success": True, "data": {}}, 30.0)]
    hook = make_hook({"host": _url(knit_server)}, timeout=0.3)

    hook.update_sync("sj_live", "ats_applications", frequency="high", integration_id="int_live")

    assert len(knit_server.received) == 2
    assert knit_server.received[-1]["body"]["dataType"] == "ats_applications"


def test_test_connection_against_a_knit_like_server(make_hook, knit_server):
    knit_server.replies = [(400, {"success": False, "error": {"msg": "syncJobId is required"}}, 0.0)]
    ok, message = make_hook({"host": _url(knit_server)}).test_connection()
    assert ok, message
    assert "syncJobId is required" in message
    assert knit_server.received[0]["body"] == {}
