"""Benchmark: durable events/s and latency of the webhook receiver against a naive one.

Both receivers run as their own processes on one embedded Postgres with fsync on (a 200 means
the row reached the disk), and are driven by the same load generator: 64 concurrent keep-alive
connections, each request a new signed application-sized (about 2 KB) ``record.new``.
The standalone receiver runs in its fastest configuration here (``WORKERS`` processes with
``WRITERS`` connections each). The naive receiver verifies, inserts one row, commits and answers:
the baseline. Durable means counted in the database afterwards: every 200 must be a row
(``*_lost`` must be 0). CPU per event is given for the server, its Postgres backends and the load
generator: on a shared machine it moves far less than events/s. ``full=True`` runs longer and also
measures the receiver mounted in ``airflow api-server`` (``--airflow`` adds that to a quick run).

Run: ``.venv/bin/python -m bench.bench_ingest [--full] [--airflow] [--workers N] [--writers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

from bench.ingest_load import run_load
from knit_devtools.embedded_postgres import EmbeddedPostgres, free_port
from knit_provider.landing.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signing-key"
CONNECTIONS = 64
# The fastest standalone configuration measured on the 2-core box: one process (it uses about 0.6 of
# a core at 6,000 events/s; a second one only adds CPU per event) with one database connection
# (bigger batches, so fewer commits and less Postgres CPU per event, than two).
WORKERS = 1
WRITERS = 1


def _rows(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM knit_landing.events")
        return int(cur.fetchone()[0])


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes used so far: a figure the machine's other load barely moves."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _backends(url: str) -> list[int]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()")
        return [row[0] for row in cur.fetchall()]


def _wait_http(port: int, path: str, deadline_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not answer {path} within {deadline_s}s")


@contextmanager
def _server(cmd: list[str], port: int, ready_path: str, env: dict[str, str], log: Path,
            ready_s: float = 60) -> Iterator[int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_http(port, ready_path, ready_s, proc)
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _children_cpu_seconds() -> float:
    """CPU time of this process's reaped children: the load generator, once it has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(label: str, url: str, db_url: str, seconds: float, server_pid: int) -> dict[str, Any]:
    run_load(url, SECRET, 2, CONNECTIONS, f"{label}-warm")
    before = _rows(db_url)
    server, backends = _tree(server_pid), _backends(db_url)
    server_cpu, db_cpu, load_cpu = _cpu_seconds(server), _cpu_seconds(backends), _children_cpu_seconds()
    result = run_load(url, SECRET, seconds, CONNECTIONS, label)
    server_cpu, db_cpu = _cpu_seconds(server) - server_cpu, _cpu_seconds(backends) - db_cpu
    load_cpu = _children_cpu_seconds() - load_cpu
    landed = _rows(db_url) - before
    duration = result["duration_us"] / 1e6
    per_event = 1e6 / max(result["ok"], 1)
    return {
        f"{label}_server_cpu_us_per_event": round(server_cpu * per_event),
        f"{label}_postgres_cpu_us_per_event": round(db_cpu * per_event),
        f"{label}_generator_cpu_us_per_event": round(load_cpu * per_event),
        f"{label}_events_per_s": round(result["ok"] / duration),
        f"{label}_p50_ms": round(result["p50_us"] / 1000, 2),
        f"{label}_p99_ms": round(result["p99_us"] / 1000, 2),
        f"{label}_ok": result["ok"],
        f"{label}_not_ok": result["not_ok"] + result["socket_errors"],
        f"{label}_rows_landed": landed,
        f"{label}_lost": max(0, result["ok"] - landed),
        "generator": result["generator"],
    }


def _airflow_env(home: Path, db_url: str, port: int) -> dict[str, str]:
    env = {**os.environ, "AIRFLOW_HOME": str(home),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"), "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
           "AIRFLOW_CONN_KNIT_LANDING_DEFAULT": db_url.replace("postgresql://", "postgres://"),
           "AIRFLOW_CONN_KNIT_DEFAULT": json.dumps({"conn_type": "knit", "password": SECRET})}
    return env


def _measure_airflow(db_url: str, seconds: float, workdir: Path) -> dict[str, Any]:
    home = workdir / "airflow"
    (home / "dags").mkdir(parents=True)
    port = free_port()
    env = _airflow_env(home, db_url, port)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cmd = [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--workers", "1"]
    with _server(cmd, port, "/knit/health", env, workdir / "airflow-api-server.log", ready_s=180) as pid:
        result = _measure("airflow", f"http://127.0.0.1:{port}/knit/webhook", db_url, seconds, pid)
    result.pop("generator")
    return result


def run(full: bool = False, airflow: bool | None = None, workers: int = WORKERS,
        writers: int = WRITERS) -> dict[str, Any]:
    """Measure the standalone receiver and the naive baseline (and, in full mode, the mounted receiver)."""
    seconds = 30.0 if full else 10.0
    airflow = full if airflow is None else airflow
    result: dict[str, Any] = {"benchmark": "ingest", "connections": CONNECTIONS, "seconds": seconds,
                              "receiver_workers": workers, "receiver_writers": writers,
                              "load_avg_1m_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, EmbeddedPostgres(fsync=True) as pg:
        workdir = Path(tmp)
        urls = {name: pg.create_database(f"ingest_{name}") for name in ("receiver", "naive", "airflow")}
        for url in urls.values():
            conn = psycopg2.connect(url)
            try:
                migrate(conn)
            finally:
                conn.close()
        env = {**os.environ, "KNIT_WEBHOOK_SECRET": SECRET}

        port = free_port()
        cmd = [sys.executable, "-m", "knit_provider.webhook", "--port", str(port), "--workers", str(workers),
               "--writers", str(writers), "--database-url", urls["receiver"], "--log-level", "warning"]
        with _server(cmd, port, "/health", env, workdir / "receiver.log") as pid:
            result.update(_measure("receiver", f"http://127.0.0.1:{port}/webhook", urls["receiver"], seconds, pid))

        port = free_port()
        cmd = [sys.executable, "-m", "bench.ingest_naive", "--port", str(port), "--database-url", urls["naive"],
               "--secret", SECRET]
        with _server(cmd, port, "/ready", env, workdir / "naive.log") as pid:
            result.update(_measure("naive", f"http://127.0.0.1:{port}/webhook", urls["naive"], seconds, pid))

        if airflow:
            result.update(_measure_airflow(urls["airflow"], seconds, workdir))
    result["load_avg_1m_after"] = os.getloadavg()[0]
    result["speedup_vs_naive"] = round(result["receiver_events_per_s"] / max(result["naive_events_per_s"], 1), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--airflow", action="store_true", default=None, help="also measure it mounted in Airflow")
    parser.add_argument("--workers", type=int, default=WORKERS, help="receiver processes (default: %(default)s)")
    parser.add_argument("--writers", type=int, default=WRITERS,
                        help="database connections per receiver process (default: %(default)s)")
    args = parser.parse_args()
    print(json.dumps(run(full=args.full, airflow=args.airflow, workers=args.workers, writers=args.writers)),
          flush=True)


if __name__ == "__main__":
    main()
