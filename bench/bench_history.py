"""Benchmark: a landing store holding a year of history costs what an empty one does.

One embedded Postgres (fsync on), two landing databases: ``empty`` (just migrated) and ``history``
(in service for a year: a partition per week, filled with ``--full`` 5,000,000 events, quick
500,000, as complete, normalized runs of four integrations, by :mod:`bench.history_fill`). Then,
in the same run, on both:

- **ingest**: durable events/s of the receiver under the load of :mod:`bench.bench_ingest` (same
  machinery: the standalone receiver, 64 connections, every id checked afterwards), four rounds,
  the stores taking turns in alternating order, the best round of each;
- **a delta's normalization**: 1,000 changes (modified, new, deleted) on top of the same
  10,000-application tables, eight deltas each, taking turns in alternating order, the median
  (and the fastest);

and the ratios history / empty (goal: at most 1.2). Beside it, on the empty database, an initial
sync's normalization (quick 100,000 applications, full 1,000,000) against its floor: the time to
``COPY`` the same output rows into the same tables (fresh, with their indexes), in the same run.

Run: ``.venv/bin/python -m bench.bench_history [--full]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2

from bench.bench_ingest import WORKERS, WRITERS
from bench.bench_normalize import land_run, timed_normalize, vacuum_analyze
from bench.history_fill import History, fill, partition_history
from bench.ingest_measure import SECRET, landing_database, losses, measure, receiver_command, serving
from knit_devtools.embedded_postgres import EmbeddedPostgres, free_port
from knit_provider.normalize.apply import normalize_runs
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas, quote_ident

SCHEMAS = Schemas(landing="knit_landing", target="knit")
DELTA = 1_000
DELTAS = 3
TABLE_APPS = 10_000


def _settle(url: str) -> None:
    """What autovacuum and the checkpointer would have done by the time the store is in use."""
    with contextlib.closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM (ANALYZE) knit_landing.events")
            cur.execute("VACUUM (ANALYZE) knit_landing.sync_runs")
            cur.execute("CHECKPOINT")


def _store_figures(url: str) -> dict[str, Any]:
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pg_total_relation_size('knit_landing.events'::regclass) + coalesce((SELECT "
            "sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i "
            "WHERE i.inhparent = 'knit_landing.events'::regclass), 0), "
            "pg_total_relation_size('knit_landing.event_ids'), "
            "(SELECT count(*) FROM pg_inherits WHERE inhparent = 'knit_landing.events'::regclass)"
        )
        events_bytes, ids_bytes, partitions = (int(value) for value in cur.fetchone())
    return {
        "history_store_gb": round(events_bytes / 2**30, 2),
        "history_event_ids_mb": round(ids_bytes / 2**20, 1),
        "history_partitions": partitions,
    }


def _deltas(urls: dict[str, str], rounds: int) -> dict[str, list[float]]:
    """Seconds of normalizing 1,000-change deltas on 10,000-application tables, the stores taking turns.

    Taking turns (empty, history, empty, ...) spreads the other load of a shared machine over both.
    """
    conns = {label: psycopg2.connect(url) for label, url in urls.items()}
    seconds: dict[str, list[float]] = {label: [] for label in urls}
    try:
        for conn in conns.values():
            land_run(conn, SCHEMAS, "sr-tables", TABLE_APPS, kind="initial")
            normalize_runs(conn, ["sr-tables"], SCHEMAS)
        for version in range(1, rounds + 1):
            # Alternate which store goes first: a drift in the machine's other load then favours neither.
            for label, conn in sorted(conns.items(), reverse=version % 2 == 0):
                run_id = f"sr-delta-{version}"
                land_run(conn, SCHEMAS, run_id, DELTA, kind="delta", base=TABLE_APPS, version=version)
                vacuum_analyze(urls[label], SCHEMAS, target=True)
                seconds[label].append(timed_normalize(conn, SCHEMAS, run_id))
    finally:
        for conn in conns.values():
            conn.close()
    return seconds


def _copy_floor(url: str, applications: int) -> dict[str, Any]:
    """Normalize an initial sync, then time COPY of its output rows into fresh copies of the same tables."""
    source = Schemas(landing="floor_landing", target="floor_source")
    copy = Schemas(landing="floor_landing", target="floor_copy")
    conn = psycopg2.connect(url)
    try:
        from knit_provider.landing.migrate import migrate

        migrate(conn, source)
        land_run(conn, source, "sr-initial", applications, kind="initial")
        vacuum_analyze(url, source)
        normalize_seconds = timed_normalize(conn, source, "sr-initial")
        ensure_schema(conn, copy)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (source.target,))
            tables = [row[0] for row in cur.fetchall()]
            dumps: dict[str, bytes] = {}
            rows = 0
            for table in tables:
                buffer = io.BytesIO()
                cur.copy_expert(
                    f"COPY {quote_ident(source.target)}.{quote_ident(table)} TO STDOUT (FORMAT binary)", buffer
                )
                dumps[table] = buffer.getvalue()
                cur.execute(f"SELECT count(*) FROM {quote_ident(source.target)}.{quote_ident(table)}")
                rows += cur.fetchone()[0]
            cur.execute("CHECKPOINT")
        started = time.perf_counter()
        with conn, conn.cursor() as cur:
            for table, data in dumps.items():
                cur.copy_expert(
                    f"COPY {quote_ident(copy.target)}.{quote_ident(table)} FROM STDIN (FORMAT binary)", io.BytesIO(data)
                )
        copy_seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {
        "initial_applications": applications,
        "initial_output_rows": rows,
        "initial_normalize_seconds": round(normalize_seconds, 2),
        "initial_copy_floor_seconds": round(copy_seconds, 2),
        "initial_over_copy_floor": round(normalize_seconds / copy_seconds, 2),
    }


def run(full: bool = False) -> dict[str, Any]:
    """Fill the history, then measure ingest and a delta on both stores, and the initial sync's floor."""
    history = History(events=5_000_000 if full else 500_000)
    seconds = 15.0 if full else 8.0
    rounds = 4
    result: dict[str, Any] = {"benchmark": "history", "mode": "full" if full else "quick"}
    env = {**os.environ, "KNIT_WEBHOOK_SECRET": SECRET}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp, EmbeddedPostgres(fsync=True) as pg:
        urls = {"empty": landing_database(pg, "history_empty"), "history": landing_database(pg, "history_full")}
        with contextlib.closing(psycopg2.connect(urls["history"])) as conn:
            partition_history(conn, SCHEMAS, history.days)
            result.update(fill(conn, SCHEMAS, history))
        for url in urls.values():
            _settle(url)
        result.update(_store_figures(urls["history"]))

        rates: dict[str, list[int]] = {label: [] for label in urls}
        for round_ in range(rounds):
            for label, url in sorted(urls.items(), reverse=round_ % 2 == 1):
                port = free_port()
                command = receiver_command(port, url, writers=WRITERS, workers=WORKERS)
                log = Path(tmp) / f"{label}-{round_}.log"
                with serving(label, command, port, "/health", env, log) as pid:
                    measured = measure(label, f"http://127.0.0.1:{port}/webhook", url, seconds, pid)
                rates[label].append(measured[f"{label}_events_per_s"])
                result[f"{label}_ingest_lost"] = result.get(f"{label}_ingest_lost", 0) + measured[f"{label}_lost"]
                for key in ("p99_ms", "server_cpu_us_per_event", "postgres_cpu_us_per_event"):
                    result.setdefault(f"{label}_{key}", []).append(measured[f"{label}_{key}"])
        for label, values in rates.items():
            # The best round: the other load of a shared machine only ever slows a round down.
            result[f"{label}_events_per_s"] = max(values)
            result[f"{label}_events_per_s_rounds"] = values
        result["ingest_history_over_empty"] = round(result["empty_events_per_s"] / result["history_events_per_s"], 2)

        deltas = _deltas(urls, 8)
        for label, values in deltas.items():
            result[f"{label}_delta_seconds"] = round(statistics.median(values), 3)
            result[f"{label}_delta_seconds_min"] = round(min(values), 3)
            result[f"{label}_delta_seconds_rounds"] = [round(v, 3) for v in values]
        result["delta_history_over_empty"] = round(result["history_delta_seconds"] / result["empty_delta_seconds"], 2)
        result.update(_copy_floor(urls["empty"], 1_000_000 if full else 100_000))
    error = losses(result)
    if error:
        result["error"] = error
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_history", description=__doc__)
    parser.add_argument("--full", action="store_true", help="5,000,000 events of history instead of 500,000")
    args = parser.parse_args()
    print(json.dumps(run(full=args.full), default=str), flush=True)


if __name__ == "__main__":
    main()
