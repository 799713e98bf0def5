"""Helpers for the receiver tests: signed bodies, an in-process receiver on one event loop, a real process."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import psycopg2

from knit_devtools.embedded_postgres import free_port
from knit_devtools.services import wait_until
from knit_provider.webhook.app import create_app
from knit_provider.webhook.receiver import Receiver
from knit_provider.webhook.server import RawServer
from knit_provider.webhook.settings import ReceiverSettings
from knit_provider.webhook.signature import sign
from knit_provider.webhook.writer import GroupCommitWriter

SECRET = b"test-signing-key"
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
_ids = itertools.count()


def new_id(prefix: str = "ev") -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}-{time.monotonic_ns()}"


def event(event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A ``record.new`` envelope as Knit sends it."""
    body: dict[str, Any] = {
        "eventId": event_id or new_id(),
        "eventType": "record.new",
        "eventData": {"info": {"id": "app-1", "candidate": {"firstName": "Ada", "emails": []}}},
        "syncType": "initial_sync",
        "syncDataType": "ats_applications",
        "syncJobId": "sj_test",
        "syncRunId": "sr_test",
        "recordId": "app-1",
    }
    body.update(fields)
    return body


def signed(body: bytes, secret: bytes = SECRET, **headers: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Knit-Signature": sign(body, secret),
        "X-Knit-Integration-Id": "int-test",
        **headers,
    }


def scalar(url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
        return row[0] if row else None


class InProcess:
    """The receiver on a private event loop, behind one of its two front ends.

    ``front="asgi"``: the ASGI app (what Airflow mounts), called through httpx's ASGI transport.
    ``front="raw"``: the standalone HTTP server on a loopback port, called over real HTTP.
    Both take their answers from the same decisions, so every test must pass on both.
    """

    def __init__(self, settings: ReceiverSettings, front: str = "asgi") -> None:
        self.settings = settings
        self.front = front
        if front == "asgi":
            self.loop = asyncio.new_event_loop()
            self.app = create_app(settings)
            self.receiver: Receiver = self.app.state.receiver
            self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")
        else:
            import uvloop

            self.loop = uvloop.new_event_loop()
            self.receiver = Receiver(settings)
            self.server = RawServer(self.run(self.receiver.ready()))
            self.run(self.server.start("127.0.0.1", 0))
            self.client = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{self.server.port}", limits=httpx.Limits(max_connections=100), timeout=30
            )

    @property
    def writer(self) -> GroupCommitWriter:
        assert self.receiver.writer is not None
        return self.receiver.writer

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def post(
        self, body: bytes | Any, headers: Mapping[str, str] | Mapping[bytes, bytes] | None = None
    ) -> httpx.Response:
        return self.run(self.client.post("/webhook", content=body, headers=headers or {}))

    def post_event(self, document: dict[str, Any], **headers: str) -> httpx.Response:
        body = orjson.dumps(document)
        return self.post(body, signed(body, **headers))

    def close(self) -> None:
        self.run(self.client.aclose())
        if self.front == "raw":
            self.run(self.server.stop(5))
        self.run(self.receiver.close())
        self.loop.close()


def settings_for(url: str, **overrides: Any) -> ReceiverSettings:
    values: dict[str, Any] = {"database_url": url, "secret": SECRET, "summary_interval_seconds": 3600}
    values.update(overrides)
    return ReceiverSettings(**values)


class ReceiverProcess:
    """``python -m knit_provider.webhook`` as a real process on a free port."""

    def __init__(self, database_url: str, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "KNIT_WEBHOOK_SECRET": SECRET.decode()}
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "knit_provider.webhook",
                "--port",
                str(self.port),
                "--database-url",
                database_url,
                "--summary-interval",
                "1",
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = log_path

    def wait_ready(self, timeout: float = 60) -> ReceiverProcess:
        def ready() -> bool:
            assert self.proc.poll() is None, f"receiver exited: {self.log_path.read_text()[-2000:]}"
            try:
                return httpx.get(self.url + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, "the receiver's /health")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


async def post_many(
    url: str, documents: list[dict[str, Any]], concurrency: int = 32, stop: asyncio.Event | None = None
) -> dict[str, int]:
    """Post each document once (until ``stop`` is set); return ``{eventId: status}`` (0 = no answer)."""
    import aiohttp

    results: dict[str, int] = {}
    queue = list(reversed(documents))
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as http:

        async def worker() -> None:
            while queue and not (stop is not None and stop.is_set()):
                document = queue.pop()
                body = orjson.dumps(document)
                try:
                    async with http.post(url + "/webhook", data=body, headers=signed(body)) as response:
                        await response.read()
                        results[document["eventId"]] = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    results[document["eventId"]] = 0

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def landed_ids(url: str, ids: list[str]) -> set[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT event_id FROM knit_landing.events WHERE event_id = ANY(%s)", (ids,))
        return {row[0] for row in cur.fetchall()}
