"""Liveness and readiness probes: separate paths, a status only, and the truth under bursts, database up or down.

What the probes no longer tell whoever asks (signing, writers, queue depth) is on the metrics listener.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
import raw_http
from prometheus_client import REGISTRY
from receiver_helpers import InProcess, settings_for, wait_until

from knit_devtools.embedded_postgres import EmbeddedPostgres
from knit_provider.webhook.app import create_app
from knit_provider.webhook.settings import resolve_mounted_settings

BURST = 400
PIPELINE = 50


def test_live_and_ready_paths(in_process: InProcess) -> None:
    get = in_process.client.get
    live, ready, health = (in_process.run(get(path)) for path in ("/health/live", "/health/ready", "/health"))
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})  # nothing about signing, writers, queue
    assert (health.status_code, health.json()) == (ready.status_code, ready.json())  # /health is readiness
    head = in_process.run(in_process.client.head("/health/live"))
    assert (head.status_code, head.content) == (200, b"")
    assert in_process.run(in_process.client.post("/health/ready", content=b"")).status_code == 405


def test_live_needs_no_database(front: str) -> None:
    harness = InProcess(settings_for("postgresql://nobody@127.0.0.1:1/none"), front)
    try:
        assert harness.run(harness.client.get("/health/live")).status_code == 200
        for path in ("/health/ready", "/health"):
            ready = harness.run(harness.client.get(path))
            assert (ready.status_code, ready.json()) == (503, {"status": "unavailable"})
    finally:
        harness.close()


def test_bursts_of_probes_tell_whether_the_database_is_up() -> None:
    """400 concurrent and 50 pipelined probes all agree with the database: 200 while up, 503 while down."""
    with EmbeddedPostgres(fsync=False) as pg:
        # The 400 come from one address, past the default cap per address (256): lifted, since what is
        # tested is the probes' answers, not that cap (test_receiver_connections.py).
        url = pg.create_database("probes")
        harness = InProcess(settings_for(url, max_connections_per_address=BURST), "raw")
        port = harness.server.port

        def burst(path: str) -> tuple[set[int], list[int]]:
            request = raw_http.get(path)
            return (
                set(harness.run(raw_http.concurrent(port, request, BURST))),
                harness.run(raw_http.pipelined(port, request, PIPELINE)),
            )

        def ready_is(status: int) -> bool:
            return harness.run(raw_http.concurrent(port, raw_http.get("/health/ready"), 1)) == [status]

        try:
            for path in ("/health", "/health/ready"):
                assert burst(path) == ({200}, [200] * PIPELINE)
            pg.stop()
            wait_until(lambda: ready_is(503), 20, "readiness to see the database down")
            for path in ("/health", "/health/ready"):
                assert burst(path) == ({503}, [503] * PIPELINE)
            assert burst("/health/live") == ({200}, [200] * PIPELINE)
            pg.start()
            wait_until(lambda: ready_is(200), 20, "readiness to see the database back")
            assert burst("/health/ready") == ({200}, [200] * PIPELINE)
        finally:
            harness.close()


@pytest.mark.parametrize("database", ["up", "down"])
def test_concurrent_probes_of_the_mounted_app(database: str, landing_url: str) -> None:
    url = landing_url if database == "up" else "postgresql://nobody@127.0.0.1:1/none"
    harness = InProcess(settings_for(url), "asgi")
    try:

        async def probes() -> set[int]:
            responses = await asyncio.gather(*(harness.client.get("/health/ready") for _ in range(BURST)))
            return {response.status_code for response in responses}

        assert harness.run(probes()) == ({200} if database == "up" else {503})
        body = orjson.loads(harness.run(harness.client.get("/health")).content)
        assert body == {"status": "ok" if database == "up" else "unavailable"}
    finally:
        harness.close()


def test_the_details_are_metrics_not_answers(landing_url: str) -> None:
    """Standalone: the writers connected and whether signatures are verified go to the metrics listener."""
    harness = InProcess(settings_for(landing_url, writers=1), "raw")

    def gauge(name: str) -> float | None:
        return REGISTRY.get_sample_value(name)

    try:
        harness.run(raw_http.until(lambda: gauge("knit_webhook_writers_connected") == 1, 10, "the writers gauge"))
        assert gauge("knit_webhook_signatures_verified") == 1
    finally:
        harness.close()


def test_an_unconfigured_mounted_receiver_says_only_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason (here: no key) is in the API server's log, not in the probe's answer."""
    for name in ("KNIT_WEBHOOK_SECRET", "KNIT_WEBHOOK_UNSIGNED", "AIRFLOW_CONN_KNIT_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KNIT_WEBHOOK_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    app = create_app(resolve_mounted_settings)

    async def probe() -> tuple[int, bytes]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://airflow") as client:
            response = await client.get("/health/ready")
        return response.status_code, response.content

    assert asyncio.run(probe()) == (503, b'{"status":"unavailable"}')
