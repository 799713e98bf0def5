"""What bench_ingest and bench_servers share: receivers as processes, one load, checks by event id.

Every configuration is its own process with its own database on one embedded Postgres (fsync on:
a 200 means the row reached the disk) and gets the same load: ``CONNECTIONS`` keep-alive
connections of :func:`bench.ingest_load.run_load`, each request a new signed application-sized
event. What was acknowledged is checked by ids: after each run, every id the generator sent is
looked up in the landing table. CPU per event is given for the server process(es), its Postgres
backends and the generator: on a shared machine it moves far less than events/s.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

from bench.ingest_load import run_load, sent_ids
from knit_devtools.embedded_postgres import EmbeddedPostgres
from knit_devtools.services import Service, wait_until
from knit_provider.landing.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signing-key"
CONNECTIONS = 64
WARM_SECONDS = 2.0
# Requests in flight when the generator stops were sent but never answered: they land a moment later.
SETTLE_SECONDS = 3.0


def landing_database(pg: EmbeddedPostgres, name: str) -> str:
    """A new database with the landing schema; its URL."""
    url = pg.create_database(name)
    with contextlib.closing(psycopg2.connect(url)) as conn:
        migrate(conn)
    return url


def receiver_command(
    port: int, database_url: str, *, writers: int, workers: int = 1, batch_size: int | None = None
) -> list[str]:
    """``python -m knit_provider.webhook`` (the raw server and the group-commit writer) with these settings."""
    cmd = [
        sys.executable,
        "-m",
        "knit_provider.webhook",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--writers",
        str(writers),
        "--database-url",
        database_url,
        "--log-level",
        "warning",
    ]
    if batch_size is not None:
        cmd += ["--batch-size", str(batch_size)]
    return cmd


@contextmanager
def serving(
    name: str, argv: list[str], port: int, ready_path: str, env: Mapping[str, str], log: Path, ready_s: float = 60
) -> Iterator[int]:
    """Run a server until the block ends; yield its process id once ``ready_path`` answers 200."""
    service = Service(name, argv, log_path=log, env=env, ready_url=f"http://127.0.0.1:{port}{ready_path}", cwd=ROOT)
    try:
        service.start(ready_s)
        assert service.process is not None
        yield service.process.pid
    finally:
        service.stop()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn and granian workers), from /proc."""
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
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return [row[0] for row in cur.fetchall()]


def _children_cpu_seconds() -> float:
    """CPU time of this process's reaped children: the load generator, once it has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def missing_ids(database_url: str, ids: list[str]) -> list[str]:
    """The ids of ``ids`` that are not an ``event_id`` of the landing table."""
    with contextlib.closing(psycopg2.connect(database_url)) as conn, conn.cursor() as cur:
        cur.execute(
            # The ids were sent in the last minutes: the recent partitions hold them (events has no index
            # on event_id, so an unbounded anti-join would read a store with a long history whole).
            "SELECT s.id FROM unnest(%s::text[]) AS s(id) WHERE NOT EXISTS "
            "(SELECT 1 FROM knit_landing.events e WHERE e.event_id = s.id "
            "AND e.received_at > now() - interval '1 day')",
            (ids,),
        )
        return [row[0] for row in cur.fetchall()]


def check_ids(label: str, database_url: str, load: dict[str, Any]) -> dict[str, Any]:
    """Compare the ids sent with the table's: how many acknowledged events are missing.

    wrk does not say which request got which answer. When every answer was a 200, every id sent
    must be in the table (the few in flight at the stop were sent whole and land too), so
    ``lost`` is exact. Otherwise only the missing ids beyond the unacknowledged requests are
    certainly lost: ``lost`` is then a lower bound, and ``lost_check`` says so.
    """
    ids = sent_ids(load)
    missing = missing_ids(database_url, ids)

    def settled() -> bool:
        missing[:] = missing_ids(database_url, missing)
        return not missing

    with contextlib.suppress(TimeoutError):
        wait_until(settled, SETTLE_SECONDS, "the requests in flight at the stop to land")
    refused = load["not_ok"] + load["socket_errors"]
    if refused == 0:
        lost, how = len(missing), "exact: all answers 200"
    else:
        lost, how = max(0, len(missing) - (len(ids) - load["ok"])), f"lower bound: {refused} not 200"
    return {
        f"{label}_ids_sent": len(ids),
        f"{label}_ids_missing": len(missing),
        f"{label}_lost": lost,
        f"{label}_lost_check": how,
    }


def measure(label: str, url: str, database_url: str, seconds: float, server_pid: int) -> dict[str, Any]:
    """Warm up, then load ``url`` for ``seconds``: durable events/s, latency, CPU per event, ids lost."""
    run_load(url, SECRET, WARM_SECONDS, CONNECTIONS, f"{label}-warm")
    server, backends = _tree(server_pid), _backends(database_url)
    server_cpu, db_cpu, load_cpu = _cpu_seconds(server), _cpu_seconds(backends), _children_cpu_seconds()
    load = run_load(url, SECRET, seconds, CONNECTIONS, label)
    server_cpu, db_cpu = _cpu_seconds(server) - server_cpu, _cpu_seconds(backends) - db_cpu
    load_cpu = _children_cpu_seconds() - load_cpu
    per_event = 1e6 / max(load["ok"], 1)
    return {
        f"{label}_events_per_s": round(load["ok"] / (load["duration_us"] / 1e6)),
        f"{label}_p50_ms": round(load["p50_us"] / 1000, 2),
        f"{label}_p99_ms": round(load["p99_us"] / 1000, 2),
        f"{label}_server_cpu_us_per_event": round(server_cpu * per_event),
        f"{label}_postgres_cpu_us_per_event": round(db_cpu * per_event),
        f"{label}_generator_cpu_us_per_event": round(load_cpu * per_event),
        f"{label}_ok": load["ok"],
        f"{label}_not_ok": load["not_ok"] + load["socket_errors"],
        **check_ids(label, database_url, load),
        "generator": load["generator"],
    }


def losses(result: dict[str, Any]) -> str | None:
    """An error message naming every configuration that lost acknowledged events, or None."""
    lost = [
        f"{key.removesuffix('_lost')} lost {value}" for key, value in result.items() if key.endswith("_lost") and value
    ]
    return "acknowledged events missing from the table: " + ", ".join(lost) if lost else None
