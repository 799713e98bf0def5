"""Benchmark: what keeping the integration registry costs ``land_events``, the receiver's one statement.

``land_events`` updates ``knit_landing.integrations`` once per integration of each batch (issue 16,
``0004_integrations.sql``). The ingest benchmark measures the whole receiver, whose rate on a shared
machine moves by more than this cost from one run to the next; this one isolates the statement.
One embedded Postgres (fsync on), one database, two landing schemas: ``before`` migrated up to 0003
(no registry), ``after`` with every migration. One connection lands batches of ``BATCH``
application-sized ``record.new`` events of one integration and one run (as the receiver's writer
does under bench_ingest's load), one commit per batch, in trials that alternate between the schemas
(a, b, then b, a, ...), and measures the Postgres backend's CPU time per event (from ``/proc``: less
sensitive to other load than wall time) and the wall time per event.

Run: ``.venv/bin/python -m bench.bench_registry [--full]``; prints one JSON line with the medians and
``cpu_ratio`` = after / before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from typing import Any

import psycopg2

from knit_devtools.embedded_postgres import EmbeddedPostgres
from knit_provider.landing.migrate import MIGRATIONS
from knit_provider.settings import Schemas
from knit_provider.sql import load_sql

BATCH = 200
BATCHES_PER_TRIAL = 40
_PAD = "x" * 1800  # bench_ingest's events are about 2 KB
_SCHEMAS = {"before": MIGRATIONS[:3], "after": MIGRATIONS}


def _batch(run_id: str) -> list[list[Any]]:
    ids = [uuid.uuid4().hex for _ in range(BATCH)]
    payloads = [
        json.dumps({"eventId": i, "eventType": "record.new", "eventData": {"pad": _PAD}, "syncRunId": run_id})
        for i in ids
    ]
    n = len(ids)
    return [
        ids,
        ["record.new"] * n,
        ["initial_sync"] * n,
        ["ats_applications"] * n,
        ["sj-bench"] * n,
        [run_id] * n,
        ids,
        ["bench-integration"] * n,
        payloads,
        [None] * n,
    ]


def _backend_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(full: bool = False) -> dict[str, Any]:
    trials = 40 if full else 16
    cpu: dict[str, list[float]] = {name: [] for name in _SCHEMAS}
    wall: dict[str, list[float]] = {name: [] for name in _SCHEMAS}
    with EmbeddedPostgres(fsync=True) as pg:
        conn = psycopg2.connect(pg.url())
        try:
            with conn, conn.cursor() as cur:
                for name, migrations in _SCHEMAS.items():
                    cur.execute(f"CREATE SCHEMA {name}")
                    for migration in migrations:
                        cur.execute(load_sql(migration, Schemas(landing=name)))
                cur.execute("SELECT pg_backend_pid()")
                (backend,) = cur.fetchone()
            for trial in range(trials):
                for name in _SCHEMAS if trial % 2 == 0 else reversed(_SCHEMAS):
                    batches = [_batch(f"run-{trial}") for _ in range(BATCHES_PER_TRIAL)]
                    sql = f"SELECT {name}.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[], %s)"
                    events = BATCH * BATCHES_PER_TRIAL
                    with conn.cursor() as cur:
                        started, cpu_started = time.perf_counter(), _backend_cpu_seconds(backend)
                        for args in batches:
                            cur.execute(sql, args)
                            conn.commit()
                        wall[name].append((time.perf_counter() - started) / events * 1e6)
                        cpu[name].append((_backend_cpu_seconds(backend) - cpu_started) / events * 1e6)
        finally:
            conn.close()
    result: dict[str, Any] = {"benchmark": "registry", "batch": BATCH, "trials": trials}
    for name in _SCHEMAS:
        result[f"{name}_cpu_us_per_event"] = round(statistics.median(cpu[name]), 1)
        result[f"{name}_wall_us_per_event"] = round(statistics.median(wall[name]), 1)
    result["cpu_ratio"] = round(result["after_cpu_us_per_event"] / max(result["before_cpu_us_per_event"], 0.1), 3)
    result["wall_ratio"] = round(result["after_wall_us_per_event"] / max(result["before_wall_us_per_event"], 0.1), 3)
    result["load_avg_1m"] = os.getloadavg()[0]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true")
    print(json.dumps(run(full=parser.parse_args().full)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
