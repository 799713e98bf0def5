"""``make demo``: the whole pipeline on this machine, against the Knit simulator, in a few minutes.

Starts Postgres (embedded, unless ``--database-url`` names one), the simulator and the webhook
receiver; runs ``knit_ats_applications`` with ``airflow dags test`` for an initial sync, then again
for a delta; prints what landed and what was normalized, with the time of each step; stops
everything it started and says where the data is.

    python -m knit_devtools.demo [--applications N] [--database-url URL]
    python -m knit_devtools.demo --explore     # reopen the kept embedded database and print psql's command
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from knit_devtools.airflow_runner import ROOT, AirflowCommandError, AirflowHome
from knit_devtools.services import ServiceError
from knit_devtools.stack import DEFAULT_INTEGRATION_ID, Stack

DEMO_DIR = ROOT / ".demo"
PG_DATA = DEMO_DIR / "pgdata"
DAG_ID = "knit_ats_applications"


class Steps:
    """Print each step as it starts and how long it took; keep the times for the report."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            self.times.append((name, elapsed))
            print(f"    {elapsed:.1f} s", flush=True)


def _run_dag(home: AirflowHome, stack: Stack, integration_id: str, log_path: Path) -> None:
    """One ``airflow dags test`` run (its whole output goes to ``log_path``); say what it did."""
    import psycopg2

    done = home.dags_test(DAG_ID, {"integration_ids": [integration_id]}, check=False)
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise AirflowCommandError(
            f"airflow dags test {DAG_ID} failed (exit {done.returncode}); "
            f"the whole log is in {log_path}; its end:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    conn = psycopg2.connect(stack.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT sync_run_id, sync_type, record_events, normalized_at IS NOT NULL "
                "FROM knit_landing.sync_runs WHERE integration_id = %s ORDER BY first_seq DESC LIMIT 1",
                (integration_id,),
            )
            run_id, sync_type, landed, normalized = cur.fetchone()
    finally:
        conn.close()
    print(
        f"    {sync_type} run {run_id}: {landed} record events landed, "
        f"{'normalized and reconciled' if normalized else 'NOT normalized'} (log: {log_path.relative_to(ROOT)})"
    )


def run_demo(applications: int, database_url: str | None, seed: int) -> int:
    from knit_devtools.report import collect, format_report

    steps = Steps()
    integration_id = DEFAULT_INTEGRATION_ID
    logs = DEMO_DIR / "logs"
    for stale in (DEMO_DIR / "airflow", logs, *(() if database_url else (PG_DATA,))):
        shutil.rmtree(stale, ignore_errors=True)  # every demo starts from nothing
    logs.mkdir(parents=True)
    stack = Stack(
        applications=applications,
        seed=seed,
        database_url=database_url,
        pg_data_dir=None if database_url else PG_DATA,
        keep_database=True,
        integration_ids=[integration_id],
        work_dir=logs,
    )
    report = None
    try:
        with steps(
            f"start {'Postgres, ' if not database_url else ''}simulator ({applications} applications), receiver"
        ):
            stack.start()
        with steps("airflow db migrate (SQLite in .demo/airflow)"):
            home = AirflowHome(DEMO_DIR / "airflow", env=stack.airflow_env()).migrate()
        with steps(f"initial sync: airflow dags test {DAG_ID}"):
            _run_dag(home, stack, integration_id, logs / "initial-sync.log")
        with steps(f"delta sync: airflow dags test {DAG_ID}"):
            _run_dag(home, stack, integration_id, logs / "delta-sync.log")
        with steps("read the report"):
            import psycopg2

            conn = psycopg2.connect(stack.database_url)
            try:
                report = collect(conn, integration_id)
            finally:
                conn.close()
    except (ServiceError, AirflowCommandError, TimeoutError) as exc:
        print(f"\nThe demo failed: {exc}", file=sys.stderr)
        print(f"Logs of every process: {logs}", file=sys.stderr)
        return 1
    finally:
        with steps("stop simulator, receiver" + ("" if database_url else ", Postgres")):
            stack.stop()
    assert report is not None
    print("\n" + format_report(report, steps.times))
    print(f"\nLogs: {logs}")
    if database_url:
        from knit_provider.database_urls import redacted

        print(f"The data is in {redacted(database_url)}, schemas knit_landing (events) and knit (tables).")
    else:
        print(
            f"The database was kept in {PG_DATA.relative_to(ROOT)} (stopped). To look at it:\n"
            f"    {sys.executable} -m knit_devtools.demo --explore\n"
            "starts it and prints the psql command; `make clean` removes it."
        )
    return 0


def explore() -> int:
    """Start the kept embedded database, print how to connect, stop it on Enter or Ctrl-C."""
    from pgserver._commands import POSTGRES_BIN_PATH

    from knit_devtools.embedded_postgres import EmbeddedPostgres

    if not (PG_DATA / "PG_VERSION").exists():
        print(f"No demo database in {PG_DATA}: run `make demo` first.", file=sys.stderr)
        return 1
    server = EmbeddedPostgres(data_dir=PG_DATA).start()
    try:
        print(
            f"Demo database running. In another terminal:\n"
            f"    {POSTGRES_BIN_PATH / 'psql'} {server.url('knit')}\n"
            "then for example: SELECT status, count(*) FROM knit.ats_applications GROUP BY 1;\n"
            "Press Enter (or Ctrl-C) to stop it."
        )
        with suppress(KeyboardInterrupt, EOFError):
            input()
    finally:
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m knit_devtools.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--applications",
        type=int,
        default=3_000,
        help="applications the simulated integration holds (default: %(default)s)",
    )
    parser.add_argument("--database-url", help="use this Postgres database instead of an embedded server")
    parser.add_argument("--seed", type=int, default=7, help="the simulator's seed (default: %(default)s)")
    parser.add_argument("--explore", action="store_true", help="reopen the kept demo database for psql")
    args = parser.parse_args(argv)
    if args.explore:
        return explore()
    if args.applications < 1:
        parser.error("--applications must be at least 1")
    if args.database_url:
        from knit_provider.database_urls import DatabaseUrlError, connection_from_url

        try:
            connection_from_url(args.database_url)  # refused now, not by the receiver half-way through
        except DatabaseUrlError as exc:
            parser.error(f"--database-url: {exc}")
    return run_demo(args.applications, args.database_url, args.seed)


if __name__ == "__main__":
    sys.exit(main())
