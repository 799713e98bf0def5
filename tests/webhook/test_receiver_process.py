"""The standalone receiver as a real process: crashes, a database restart, two receivers, start-up."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from receiver_helpers import ROOT, ReceiverProcess, event, landed_ids, post_many, scalar, wait_until

from knit_devtools.embedded_postgres import EmbeddedPostgres


def _acknowledged(results: dict[str, int]) -> list[str]:
    return [event_id for event_id, status in results.items() if status == 200]


def test_sigkill_during_load_loses_no_acknowledged_event(landing_url: str, tmp_path: Path) -> None:
    receiver = ReceiverProcess(landing_url, tmp_path / "receiver.log").wait_ready()
    documents = [event() for _ in range(20_000)]

    async def load_then_kill() -> dict[str, int]:
        stop = asyncio.Event()
        load = asyncio.ensure_future(post_many(receiver.url, documents, concurrency=32, stop=stop))
        deadline = asyncio.get_running_loop().time() + 30
        # Kill mid-load: once some events have been answered, with more still in flight.
        while asyncio.get_running_loop().time() < deadline:
            landed = scalar(
                landing_url,
                "SELECT count(*) FROM knit_landing.events WHERE event_id = ANY(%s)",
                ([d["eventId"] for d in documents[:2000]],),
            )
            if landed >= 300:
                break
            await asyncio.sleep(0.02)
        os.kill(receiver.proc.pid, signal.SIGKILL)
        receiver.proc.wait()
        stop.set()  # what was in flight gets its answer or an error; nothing more is sent
        return await load

    try:
        results = asyncio.run(load_then_kill())
    finally:
        receiver.stop()
    acknowledged = _acknowledged(results)
    assert len(acknowledged) >= 300
    assert len(acknowledged) < len(documents), "the receiver was killed after the load, not during it"
    assert set(acknowledged) <= landed_ids(landing_url, acknowledged)


def test_database_restart_during_load_503s_then_recovers_without_loss(tmp_path: Path) -> None:
    with EmbeddedPostgres(fsync=False) as pg:
        url = pg.create_database("restart")
        receiver = ReceiverProcess(url, tmp_path / "receiver.log").wait_ready()
        try:
            documents = [event() for _ in range(1000)]

            async def scenario() -> tuple[dict[str, int], dict[str, int]]:
                first = await post_many(receiver.url, documents[:400], concurrency=16)
                pg.crash()
                during = await post_many(receiver.url, documents[400:500], concurrency=16)
                await asyncio.to_thread(pg.start)
                return first, during

            first, during = asyncio.run(scenario())

            wait_until(lambda: _health(receiver.url), 60, "the receiver to reconnect")
            # Everything not acknowledged is sent again, as Knit does, and then lands.
            retried = [d for d in documents[:500] if (first | during).get(d["eventId"]) != 200]
            after = asyncio.run(post_many(receiver.url, retried + documents[500:], concurrency=16))
        finally:
            receiver.stop()
        log = (tmp_path / "receiver.log").read_text()
        assert set(during.values()) <= {503, 0}, "no event may be acknowledged while the database is down"
        assert 503 in during.values()
        assert set(after.values()) == {200}
        ids = [d["eventId"] for d in documents]
        assert landed_ids(url, ids) == set(ids)
        assert "Connected to the landing database" in log


def _health(url: str) -> bool:
    """Whether the receiver reaches the database and has a writer connected again (readiness says both)."""
    try:
        response = httpx.get(url + "/health", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def test_two_receivers_on_one_database(landing_url: str, tmp_path: Path) -> None:
    one = ReceiverProcess(landing_url, tmp_path / "one.log")
    two = ReceiverProcess(landing_url, tmp_path / "two.log")
    try:
        one.wait_ready()
        two.wait_ready()
        run_id = "sr_two_receivers"
        documents = [event(syncRunId=run_id) for _ in range(600)]

        async def both() -> tuple[dict[str, int], dict[str, int]]:
            # Each receiver gets every event: Knit's retries may reach either one.
            return await asyncio.gather(post_many(one.url, documents, 16), post_many(two.url, documents, 16))

        first, second = asyncio.run(both())
    finally:
        one.stop()
        two.stop()
    assert set(first.values()) == {200}
    assert set(second.values()) == {200}
    assert scalar(landing_url, "SELECT count(*) FROM knit_landing.events WHERE sync_run_id = %s", (run_id,)) == 600
    assert (
        scalar(landing_url, "SELECT record_events FROM knit_landing.sync_runs WHERE sync_run_id = %s", (run_id,)) == 600
    )


@pytest.mark.parametrize("args", [[], ["--unsigned"]])
def test_start_up_without_a_key(args: list[str], landing_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KNIT_WEBHOOK_", "AIRFLOW_CONN_KNIT"))}
    command = [
        sys.executable,
        "-m",
        "knit_provider.webhook",
        "--database-url",
        "postgresql://nobody@127.0.0.1:1/x",
        "--port",
        "1",
    ]
    if args:
        # Unsigned mode starts (and says so loudly); it is stopped as soon as it has.
        proc = subprocess.Popen(
            [*command, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if "UNSIGNED" in line:
                    break
            assert any("UNSIGNED" in line for line in lines)
        finally:
            proc.kill()
            proc.wait()
        return
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "No webhook signing key is configured" in done.stderr
    assert "knit_default" in done.stderr
