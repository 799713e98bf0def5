"""KnitHook over real sockets: a local HTTP server answering like Knit, real requests and urllib3.

These check what mocks cannot: the bytes on the wire, urllib3's own DEBUG logging, a refused
connection and a read timeout.
"""

from __future__ import annotations

import json
import socket
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


def _start(hook: Any) -> Any:
    return hook.start_sync(
        "ats_applications", ["application_info"], "https://hooks.example/knit", integration_id="int_live"
    )


def test_start_sync_over_the_wire_logs_no_secret_even_at_debug(make_hook, knit_server, all_logs):
    knit_server.replies = [(503, {"success": False, "error": {"msg": "warming up"}}, 0.0)]
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


def test_read_timeout_is_retried(make_hook, knit_server):
    knit_server.replies = [(200, _OK, 30.0)]
    hook = make_hook({"host": _url(knit_server)}, timeout=0.3)

    assert _start(hook).sync_job_id == "sj_live"
    assert len(knit_server.received) == 2


def test_test_connection_against_a_knit_like_server(make_hook, knit_server):
    knit_server.replies = [(400, {"success": False, "error": {"msg": "syncJobId is required"}}, 0.0)]
    ok, message = make_hook({"host": _url(knit_server)}).test_connection()
    assert ok, message
    assert "syncJobId is required" in message
    assert knit_server.received[0]["body"] == {}
