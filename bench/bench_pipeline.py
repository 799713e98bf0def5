"""Benchmark: the whole pipeline at scale, an initial sync from the simulator to normalized tables.

One initial sync of N applications (quick: 100,000; ``full=True``: 1,000,000) goes from the
simulator through the standalone receiver (one process, Postgres with fsync on, so every 200 is on
disk) into the landing store, then is normalized and reconciled in-process, as the DAG's tasks do.
Phases, each timed on the wall clock:

- ingest: ``sync.start`` until the simulator's run is complete, i.e. ``sync.events.allConsumed``
  got its 200, which the receiver gives only after the event is committed;
- normalize: the run's events into ``knit.ats_*`` (one transaction);
- reconcile: distinct landed record events against Knit's ``emitted``/``consumed``.

Lost is counted, not assumed: simulator consumed minus distinct record events landed, and landed
applications minus normalized rows. Both must be 0.

Baseline, measured in the same run: the same simulator delivering the same number of applications
to a receiver that only answers 200 (``knit_simulator.sink``: no verification, no database). That is
the upper bound of delivery on this machine, so ``ingest_vs_sink`` says how close the durable
receiver comes to a receiver that does nothing. Normalization's own baseline (per-row upserts) is
in ``bench_normalize``.

Run: ``.venv/bin/python -m bench.bench_pipeline [--full]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import psycopg2

from knit_devtools.stack import Stack
from knit_provider.normalize import normalize_runs, reconcile_run
from knit_provider.settings import RECORD_EVENT_TYPES, Schemas
from knit_simulator.testing import run_simulator

QUICK_APPLICATIONS = 100_000
FULL_APPLICATIONS = 1_000_000
GOAL_FULL_SECONDS = 240.0
INTEGRATION = "bench-pipeline"
SEED = 1
WAIT_SECONDS = 3600.0


def _ingest_and_wait(sim: Any, destination: str, applications: int) -> tuple[float, dict[str, Any]]:
    """``sync.start``, then wait for the run to complete; returns (seconds, the simulator's run)."""
    started = time.perf_counter()
    job_id = sim.start_sync(INTEGRATION, destination)["data"]["syncJobId"]
    run = sim.wait_job(job_id, timeout=WAIT_SECONDS)["runs"][-1]
    seconds = time.perf_counter() - started
    if run["state"] != "completed" or run["consumed"] != applications:
        raise RuntimeError(f"the run did not complete with {applications} applications consumed: {run}")
    return seconds, run


def baseline(applications: int) -> dict[str, Any]:
    """The simulator delivering to a receiver that answers 200 and does nothing else."""
    sink = subprocess.Popen([sys.executable, "-m", "knit_simulator.sink"], stdout=subprocess.PIPE)
    try:
        assert sink.stdout is not None
        line = sink.stdout.readline().decode().strip()
        if not line.startswith("sink listening on "):
            raise RuntimeError(f"the sink did not start: {line!r}")
        with run_simulator(applications=applications, seed=SEED, api_key="bench-pipeline-key") as sim:
            seconds, run = _ingest_and_wait(sim, line.rsplit(" ", 1)[1] + "/knit", applications)
    finally:
        sink.terminate()
        sink.wait(10)
    return {"sink_seconds": round(seconds, 2), "sink_events_per_s": round(run["emitted"] / seconds)}


def _scalar(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        value = cur.fetchone()[0]
    conn.rollback()
    return value


def pipeline(applications: int) -> dict[str, Any]:
    """Simulator → receiver → landing → normalize → reconcile, with the count lost at each step."""
    schemas = Schemas()
    setup_started = time.perf_counter()
    with Stack(applications=applications, seed=SEED, integration_ids=(INTEGRATION,), fsync=True) as stack:
        setup = time.perf_counter() - setup_started
        ingest, run = _ingest_and_wait(stack.sim, stack.webhook_url, applications)
        run_id = run["syncRunId"]
        conn = psycopg2.connect(stack.database_url)
        try:
            if (
                _scalar(
                    conn,
                    "SELECT all_consumed_at IS NOT NULL FROM knit_landing.sync_runs WHERE sync_run_id = %s",
                    (run_id,),
                )
                is not True
            ):
                raise RuntimeError(f"the simulator completed run {run_id} but its allConsumed has not landed")
            started = time.perf_counter()
            (result,) = normalize_runs(conn, [run_id], schemas)
            normalize = time.perf_counter() - started
            started = time.perf_counter()
            reconciliation = reconcile_run(conn, run_id, schemas)
            reconcile = time.perf_counter() - started
            landed = _scalar(
                conn,
                "SELECT count(DISTINCT record_id) FROM knit_landing.events "
                "WHERE sync_run_id = %s AND event_type = ANY(%s)",
                (run_id, list(RECORD_EVENT_TYPES)),
            )
            normalized = _scalar(
                conn,
                "SELECT count(*) FROM knit.ats_applications WHERE integration_id = %s AND NOT is_deleted",
                (INTEGRATION,),
            )
            # events is partitioned: its size is its partitions'.
            events_table = _scalar(
                conn,
                "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('knit_landing.events')",
            )
        finally:
            conn.close()
    end_to_end = ingest + normalize + reconcile
    return {
        "setup_seconds": round(setup, 1),
        "ingest_seconds": round(ingest, 2),
        "ingest_events_per_s": round(run["emitted"] / ingest),
        "normalize_seconds": round(normalize, 2),
        "normalize_applications_per_s": round(result.applications / normalize),
        "reconcile_seconds": round(reconcile, 3),
        "end_to_end_seconds": round(end_to_end, 2),
        "end_to_end_applications_per_s": round(applications / end_to_end),
        "delivery_attempts": run["deliveryAttempts"],
        "delivery_failures": run["failures"],
        "lost_acknowledged": run["consumed"] - landed,
        "lost_in_normalize": landed - normalized,
        "reconciled": reconciliation.ok,
        "events_table_mb": round(events_table / 2**20),
    }


def run(full: bool = False) -> dict[str, Any]:
    """Baseline first (the sink), then the pipeline, at the same size."""
    applications = FULL_APPLICATIONS if full else QUICK_APPLICATIONS
    result: dict[str, Any] = {
        "benchmark": "pipeline",
        "applications": applications,
        "load_avg_1m_before": os.getloadavg()[0],
    }
    result.update(baseline(applications))
    result.update(pipeline(applications))
    result["ingest_vs_sink"] = round(result["sink_seconds"] / result["ingest_seconds"], 2)
    result["lost"] = result["lost_acknowledged"] + result["lost_in_normalize"]
    if full:
        result["goal_seconds"] = GOAL_FULL_SECONDS
        result["within_goal"] = result["end_to_end_seconds"] < GOAL_FULL_SECONDS
    result["load_avg_1m_after"] = os.getloadavg()[0]
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help=f"{FULL_APPLICATIONS:,} applications")
    run(full=parser.parse_args().full)


if __name__ == "__main__":
    main()
