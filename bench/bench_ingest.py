"""Benchmark: durable events/s and latency of the webhook receiver against a naive one, on one server.

Three receivers, each its own process with its own database on one embedded Postgres (fsync on,
so a 200 means the row reached the disk), driven by the same load: 64 keep-alive connections of
wrk, each request a new signed application-sized (about 2 KB) ``record.new``
(:mod:`bench.ingest_measure`):

(a) ``receiver``: the standalone receiver as users run it, raw HTTP server and group-commit
    writer (``WORKERS`` processes with ``WRITERS`` connections each, its fastest configuration);
(b) ``naive_raw``: the same process and HTTP server with the writer set to one event per commit
    on ``NAIVE_CONNECTIONS`` connections (``--batch-size 1``): verify, one ``land_events``,
    commit, answer;
(c) ``naive_uvicorn``: the original baseline, the same naive strategy as a small ASGI app under
    uvicorn with httptools (:mod:`bench.ingest_naive`), kept for continuity.

So ``server_speedup`` = (b)/(c) is what the HTTP server alone is worth, ``group_commit_speedup`` =
(a)/(b) what batching commits alone is worth, and ``speedup_vs_naive`` = (a)/(c) their product.
Durable is checked by ids: every id the generator sent is looked up in the table afterwards
(``*_lost`` must be 0; ``*_lost_check`` says whether that figure is exact). ``full=True`` runs
longer and also measures the receiver mounted in ``airflow api-server`` (``--airflow`` adds that
to a quick run). The ASGI servers are compared in :mod:`bench.bench_servers`.

Run: ``.venv/bin/python -m bench.bench_ingest [--full] [--airflow] [--workers N] [--writers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ingest_measure import CONNECTIONS, ROOT, SECRET, landing_database, losses, measure, receiver_command, serving
from knit_devtools.embedded_postgres import EmbeddedPostgres, free_port

# The fastest standalone configuration measured on the 2-core box: one process (it uses about 0.6 of
# a core at 6,000 events/s; a second one only adds CPU per event) with one database connection
# (bigger batches, so fewer commits and less Postgres CPU per event, than two).
WORKERS = 1
WRITERS = 1
# Connections of both naive receivers: each commits one event at a time, so up to this many commits
# are in flight, as many as a typical connection pool allows.
NAIVE_CONNECTIONS = 16


def _airflow_env(home: Path, db_url: str, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_KNIT_LANDING_DEFAULT": db_url.replace("postgresql://", "postgres://"),
        "AIRFLOW_CONN_KNIT_DEFAULT": json.dumps({"conn_type": "knit", "password": SECRET}),
    }
    return env


def _measure_airflow(db_url: str, seconds: float, workdir: Path) -> dict[str, Any]:
    home = workdir / "airflow"
    (home / "dags").mkdir(parents=True)
    port = free_port()
    env = _airflow_env(home, db_url, port)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cmd = [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--workers", "1"]
    with serving("airflow", cmd, port, "/knit/health", env, workdir / "airflow-api-server.log", ready_s=180) as pid:
        result = measure("airflow", f"http://127.0.0.1:{port}/knit/webhook", db_url, seconds, pid)
    result.pop("generator")
    return result


def run(
    full: bool = False, airflow: bool | None = None, workers: int = WORKERS, writers: int = WRITERS
) -> dict[str, Any]:
    """Measure (a) the receiver, (b) the naive strategy on its server, (c) the naive ASGI app under uvicorn."""
    seconds = 30.0 if full else 8.0
    airflow = full if airflow is None else airflow
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "connections": CONNECTIONS,
        "seconds": seconds,
        "receiver_workers": workers,
        "receiver_writers": writers,
        "naive_connections": NAIVE_CONNECTIONS,
        "load_avg_1m_before": os.getloadavg()[0],
    }
    env = {**os.environ, "KNIT_WEBHOOK_SECRET": SECRET}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, EmbeddedPostgres(fsync=True) as pg:
        workdir = Path(tmp)
        receivers: dict[str, Callable[[int, str], list[str]]] = {
            "receiver": lambda port, db: receiver_command(port, db, writers=writers, workers=workers),
            "naive_raw": lambda port, db: receiver_command(port, db, writers=NAIVE_CONNECTIONS, batch_size=1),
            "naive_uvicorn": lambda port, db: [
                sys.executable,
                "-m",
                "bench.ingest_naive",
                "--port",
                str(port),
                "--database-url",
                db,
                "--secret",
                SECRET,
                "--pool-size",
                str(NAIVE_CONNECTIONS),
            ],
        }
        for label, command in receivers.items():
            db, port = landing_database(pg, f"ingest_{label}"), free_port()
            ready = "/ready" if label == "naive_uvicorn" else "/health"
            with serving(label, command(port, db), port, ready, env, workdir / f"{label}.log") as pid:
                result.update(measure(label, f"http://127.0.0.1:{port}/webhook", db, seconds, pid))
        if airflow:
            result.update(_measure_airflow(landing_database(pg, "ingest_airflow"), seconds, workdir))
    result["load_avg_1m_after"] = os.getloadavg()[0]
    rate = {label: max(result[f"{label}_events_per_s"], 1) for label in receivers}
    result["server_speedup"] = round(rate["naive_raw"] / rate["naive_uvicorn"], 2)
    result["group_commit_speedup"] = round(rate["receiver"] / rate["naive_raw"], 2)
    result["speedup_vs_naive"] = round(rate["receiver"] / rate["naive_uvicorn"], 2)
    error = losses(result)
    if error:
        result["error"] = error
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--airflow", action="store_true", default=None, help="also measure it mounted in Airflow")
    parser.add_argument("--workers", type=int, default=WORKERS, help="receiver processes (default: %(default)s)")
    parser.add_argument(
        "--writers", type=int, default=WRITERS, help="database connections per receiver process (default: %(default)s)"
    )
    args = parser.parse_args()
    result = run(full=args.full, airflow=args.airflow, workers=args.workers, writers=args.writers)
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
