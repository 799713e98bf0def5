"""A tiny webhook receiver for the simulator's tests, and a signature verifier written from Knit's docs.

Deliberately independent of the simulator's code: the verifier decodes the header and compares
digests (the simulator encodes), and the server is the standard library's, threaded, keep-alive.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "test-key-4f0c"  # the simulator tests' Knit API key


def signature_valid(raw_body: bytes, header: str | None, api_key: str) -> bool:
    """Knit: X-Knit-Signature = base64url(HMAC-SHA256(key=API key, msg=raw body)), no padding."""
    if not header or "=" in header:
        return False
    try:
        received = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    except ValueError:
        return False
    expected = hmac.new(api_key.encode("utf-8"), raw_body, hashlib.sha256).digest()
    return hmac.compare_digest(received, expected)


@dataclass
class Delivery:
    """One request as the receiver saw it, and what it answered (None: hung up without answering)."""

    order: int
    headers: dict[str, str]
    body: bytes
    answered: int | None
    complete_body: bool
    body_seconds: float = 0.0  # how long the body took to arrive after the headers

    @property
    def event(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


# policy(event_id or None, attempt number for that body (1-based), raw body) -> status or None
Policy = Callable[[str | None, int, bytes], int | None]


def always_ok(_event_id: str | None, _attempt: int, _body: bytes) -> int | None:
    return 200


@dataclass
class Receiver:
    """Records every request in arrival order and lets tests wait on what it has seen."""

    policy: Policy = always_ok
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: dict[bytes, int] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def record(self, headers: dict[str, str], body: bytes, complete: bool, body_seconds: float = 0.0) -> int | None:
        with self.cond:
            attempt = self.attempts.get(body, 0) + 1
            self.attempts[body] = attempt
        event_id = None
        with suppress(ValueError, AttributeError):
            event_id = json.loads(body).get("eventId")
        # the policy runs outside the lock: it may block (to hold deliveries in flight)
        answer = self.policy(event_id, attempt, body) if complete else None
        with self.cond:
            self.deliveries.append(Delivery(len(self.deliveries), headers, body, answer, complete, body_seconds))
            self.cond.notify_all()
        return answer

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float = 60.0) -> None:
        """Block until ``predicate(deliveries)`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.deliveries):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"condition not met after {timeout}s; {len(self.deliveries)} deliveries")
                self.cond.wait(left)

    def snapshot(self) -> list[Delivery]:
        with self.cond:
            return list(self.deliveries)

    def consumed(self) -> list[Delivery]:
        """Deliveries answered 200 with a parseable body, in arrival order."""
        return [d for d in self.snapshot() if d.answered == 200 and d.event is not None]

    def events_of_run(self, run_id: str) -> list[dict[str, Any]]:
        """Events of one run that were answered 200, first 200 of each eventId only (none without one)."""
        seen: set[str] = set()
        out = []
        for d in self.consumed():
            event = d.event
            assert event is not None
            event_id = event.get("eventId")
            if event.get("syncRunId") == run_id and event_id and event_id not in seen:
                seen.add(event_id)
                out.append(event)
        return out


@contextmanager
def serve(policy: Policy = always_ok) -> Iterator[Receiver]:
    receiver = Receiver(policy)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body leave in two writes; without this, Nagle holds the body ~40 ms
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            started = time.monotonic()
            body = self.rfile.read(length)
            took = time.monotonic() - started
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = receiver.record(headers, body, complete=len(body) == length, body_seconds=took)
            if answer is None:
                self.close_connection = True
                return
            payload = b'{"ok":true}' if answer == 200 else b'{"ok":false}'
            self.send_response(answer)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default backlog of 5 makes 32 simultaneous connects wait a second

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/knit/webhook"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
