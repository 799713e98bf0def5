"""Benchmark: the receiver's own HTTP server against maintained ASGI servers, same writer, same load.

Evidence for the choice "keep the hand-written server": the standalone receiver (raw httptools
protocol on uvloop, :mod:`knit_provider.webhook.server`) against the receiver's ASGI app
(:func:`knit_provider.webhook.app.create_app`, what Airflow's API server mounts) under uvicorn
with httptools, under uvicorn with h11, and under granian (ASGI interface). Every one is one
process with the same group-commit writer (``WRITERS`` connections, default batch settings) on
its own database of one embedded Postgres, driven by the same load as bench_ingest (64 keep-alive
connections of wrk, signed application-sized events; :mod:`bench.ingest_measure`), and checked
by event ids. ``<server>_vs_raw`` is its durable events/s over the raw server's (below 1: slower),
``<server>_p99_vs_raw`` its p99 latency over the raw server's (above 1: slower).

Run: ``.venv/bin/python -m bench.bench_servers [--full] [--writers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.ingest_measure import CONNECTIONS, SECRET, landing_database, losses, measure, receiver_command, serving
from knit_devtools.embedded_postgres import EmbeddedPostgres, free_port

WRITERS = 1  # as bench_ingest's receiver: its fastest standalone configuration
_APP = "bench.asgi_receiver:create"


def _command(server: str, port: int, database_url: str, writers: int) -> list[str]:
    if server == "raw":
        return receiver_command(port, database_url, writers=writers)
    if server == "granian":
        granian = str(Path(sys.executable).with_name("granian"))
        return [
            granian,
            "--interface",
            "asgi",
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--no-ws",
            "--log-level",
            "warning",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--factory",
            _APP,
        ]
    http = server.removeprefix("uvicorn_")
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        _APP,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        http,
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


SERVERS = ("raw", "uvicorn_httptools", "uvicorn_h11", "granian")


def run(full: bool = False, writers: int = WRITERS) -> dict[str, Any]:
    """Measure the raw server and the ASGI app under each ASGI server, one after the other."""
    seconds = 30.0 if full else 6.0
    result: dict[str, Any] = {
        "benchmark": "servers",
        "connections": CONNECTIONS,
        "seconds": seconds,
        "writers": writers,
        "load_avg_1m_before": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp, EmbeddedPostgres(fsync=True) as pg:
        for server in SERVERS:
            db, port = landing_database(pg, f"servers_{server}"), free_port()
            # The ASGI app reads its settings from these, as the standalone receiver would.
            env = {
                **os.environ,
                "KNIT_WEBHOOK_SECRET": SECRET,
                "KNIT_WEBHOOK_DATABASE_URL": db,
                "KNIT_WEBHOOK_WRITERS": str(writers),
            }
            command = _command(server, port, db, writers)
            with serving(server, command, port, "/health", env, Path(tmp) / f"{server}.log") as pid:
                result.update(measure(server, f"http://127.0.0.1:{port}/webhook", db, seconds, pid))
    result["load_avg_1m_after"] = os.getloadavg()[0]
    raw_rate, raw_p99 = max(result["raw_events_per_s"], 1), max(result["raw_p99_ms"], 0.01)
    for server in SERVERS[1:]:
        result[f"{server}_vs_raw"] = round(result[f"{server}_events_per_s"] / raw_rate, 2)
        result[f"{server}_p99_vs_raw"] = round(result[f"{server}_p99_ms"] / raw_p99, 2)
    error = losses(result)
    if error:
        result["error"] = error
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="30 s per server instead of 6")
    parser.add_argument(
        "--writers",
        type=int,
        default=WRITERS,
        help="database connections of the writer, in every server (default: %(default)s)",
    )
    args = parser.parse_args()
    result = run(full=args.full, writers=args.writers)
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
