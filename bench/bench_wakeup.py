"""Wake-up latency: from the commit that lands ``sync.events.allConsumed`` to the trigger's event.

The measured path is the real one: another process lands the event through ``land_events`` and
commits (fsync on); ``AllConsumedTrigger``, LISTENing with a 60 s backup poll, is woken by the
NOTIFY, checks the run and yields. The clock starts when the writer sends COMMIT, so the figure
includes the commit itself. Both processes read ``time.monotonic()`` (CLOCK_MONOTONIC: one clock
for the whole machine).

Baseline, in the same run: a real polling loop (the same query every second, as a poke-mode sensor
with ``poke_interval=1`` does), with the completion landing at a random moment of its cycle. Its
expected median is half the interval; the trigger's backup poll alone would be 30 s.

Goal: median under 100 ms. ``python -m bench.bench_wakeup [--full]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import statistics
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

from knit_devtools.embedded_postgres import EmbeddedPostgres

BACKUP_POLL = 60.0
POLL_INTERVAL = 1.0
GOAL_MEDIAN_MS = 100.0
LAND_SQL = "SELECT knit_landing.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[])"


def _writer(url: str, commands: Connection) -> None:
    """Writer process: for each (job, run) received, land its allConsumed and answer the COMMIT time."""
    import psycopg2

    conn = psycopg2.connect(url)
    while (job_run := commands.recv()) is not None:
        job, run = job_run
        event = {"eventId": str(uuid.uuid4()), "eventType": "sync.events.allConsumed", "syncType": "delta_sync",
                 "syncDataType": "ats_applications", "syncJobId": job, "syncRunId": run,
                 "eventData": {"status": "SUCCESS", "processed": "1", "emitted": "1", "consumed": "1",
                               "complete": True}}
        with conn.cursor() as cur:
            cur.execute(LAND_SQL, ([event["eventId"]], [event["eventType"]], ["delta_sync"], ["ats_applications"],
                                   [job], [run], [None], ["bench"], [json.dumps(event)]))
        committing = time.monotonic()
        conn.commit()
        commands.send((committing, time.monotonic()))
    conn.close()


class Writer:
    """The other process and connection that commits the allConsumed, as the receiver would."""

    def __init__(self, url: str) -> None:
        self._ours, theirs = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(target=_writer, args=(url, theirs),
                                                                     daemon=True)
        self._process.start()

    async def complete(self, job: str, run: str) -> tuple[float, float]:
        self._ours.send((job, run))
        committing, committed = await asyncio.to_thread(self._ours.recv)
        return committing, committed

    def close(self) -> None:
        self._ours.send(None)
        self._process.join(10)


async def _listening(conn: Any, application_name: str) -> None:
    """Wait until the trigger has LISTENed, checked once and gone idle: the moment to commit."""
    query = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle' "
             "AND query LIKE '%sync_runs%'")
    while True:
        if await conn.fetchval(query, application_name):
            return
        await asyncio.sleep(0.005)


async def measure_trigger(url: str, writer: Writer, iterations: int) -> tuple[list[float], list[float]]:
    import asyncpg

    from knit_provider.triggers.all_consumed import APPLICATION_NAME, AllConsumedTrigger

    latencies, commits = [], []
    observer = await asyncpg.connect(url)
    try:
        for i in range(iterations):
            job, run = f"wake-job-{i}", f"wake-run-{uuid.uuid4().hex[:8]}"
            trigger = AllConsumedTrigger(sync_job_id=job, sync_run_id=run, poll_interval=BACKUP_POLL, timeout=120)
            events = trigger.run()
            first = asyncio.ensure_future(anext(events))
            await _listening(observer, APPLICATION_NAME)
            committing, committed = await writer.complete(job, run)
            event = await first
            woke = time.monotonic()
            await events.aclose()
            if event.payload["status"] != "success":
                raise RuntimeError(f"trigger did not succeed: {event.payload}")
            latencies.append((woke - committing) * 1000)
            commits.append((committed - committing) * 1000)
    finally:
        await observer.close()
    return latencies, commits


async def measure_polling(url: str, writer: Writer, iterations: int, interval: float) -> list[float]:
    """A plain polling loop over the same query; the completion lands at a random phase of its cycle."""
    import asyncpg

    from knit_provider.landing.runs import RunSelector, afind_run
    from knit_provider.settings import Schemas

    schemas = Schemas.from_env()
    latencies = []
    conn = await asyncpg.connect(url)
    try:
        for i in range(iterations):
            job, run = f"poll-job-{i}", f"poll-run-{uuid.uuid4().hex[:8]}"
            selector = RunSelector.create(job, run)
            first_check = asyncio.Event()

            async def poll(selector: RunSelector = selector, first_check: asyncio.Event = first_check) -> float:
                while True:
                    state = await afind_run(conn, selector, schemas)
                    if state is not None and state.complete:
                        return time.monotonic()
                    first_check.set()
                    await asyncio.sleep(interval)

            poller = asyncio.ensure_future(poll())
            await first_check.wait()
            await asyncio.sleep(random.uniform(0, interval))  # a random phase of the poll cycle
            committing, _ = await writer.complete(job, run)
            latencies.append((await poller - committing) * 1000)
    finally:
        await conn.close()
    return latencies


def _p99(values: list[float]) -> float:
    """Nearest-rank 99th percentile (with 50 samples, that is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def run(full: bool = False) -> dict[str, Any]:
    iterations, poll_iterations = (300, 60) if full else (50, 20)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-wakeup-airflow-"))
    # One progress line per iteration is noise here (Airflow reads this when it is first imported, below).
    os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "knit_provider=WARNING")
    load_before = os.getloadavg()[0]
    with EmbeddedPostgres(fsync=True) as pg:
        url = pg.create_database("bench_wakeup")
        import psycopg2

        from knit_provider.landing.migrate import migrate

        conn = psycopg2.connect(url)
        migrate(conn)
        conn.close()
        os.environ["AIRFLOW_CONN_KNIT_LANDING_DEFAULT"] = url
        writer = Writer(url)
        try:
            notify, commits = asyncio.run(measure_trigger(url, writer, iterations))
            polling = asyncio.run(measure_polling(url, writer, poll_iterations, POLL_INTERVAL))
        finally:
            writer.close()
    notify_median = statistics.median(notify)
    polling_median = statistics.median(polling)
    return {
        "benchmark": "wakeup",
        "iterations": iterations,
        "backup_poll_s": BACKUP_POLL,
        "notify_median_ms": round(notify_median, 2),
        "notify_p99_ms": round(_p99(notify), 2),
        "notify_max_ms": round(max(notify), 2),
        "commit_median_ms": round(statistics.median(commits), 2),
        "baseline_poll_interval_s": POLL_INTERVAL,
        "baseline_iterations": poll_iterations,
        "baseline_median_ms": round(polling_median, 1),
        "baseline_p99_ms": round(_p99(polling), 1),
        "baseline_expected_median_ms": POLL_INTERVAL * 500,
        "backup_poll_only_expected_median_ms": BACKUP_POLL * 500,
        "speedup_vs_1s_poll": round(polling_median / notify_median, 1),
        "goal_median_ms": GOAL_MEDIAN_MS,
        "goal_met": notify_median < GOAL_MEDIAN_MS,
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="more iterations (300 + 60 polling)")
    print(json.dumps(run(full=parser.parse_args().full)), flush=True)


if __name__ == "__main__":
    main()
