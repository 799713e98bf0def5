"""``make demo``: the whole pipeline on this machine, against the Knit simulator, in a few minutes.

Starts Postgres (embedded, unless ``--database-url`` names one), the simulator and the webhook
receiver; runs the scheduled DAG of each enabled data type (``knit_ats_applications``,
``knit_ats_jobs``) with ``airflow dags test``: an initial sync of each, then a delta of each; after
each, what landed, what was normalized and the extra of the asset event its ``publish`` emitted (what
a DAG scheduled on ``knit://<type>`` is given); then the report (``report.py``), with the time of each
step; stops everything it started and says where the data is.

    python -m knit_devtools.demo [--applications N] [--database-url URL]
    python -m knit_devtools.demo --explore     # reopen the kept embedded database and print psql's command

The database URL may also come from ``$KNIT_DEMO_DATABASE_URL``: ``make demo KNIT_DEMO_DATABASE_URL='...'``
hands a URL holding ``&`` over in the environment, where no shell splits it again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from knit_devtools.airflow_runner import ROOT, AirflowCommandError, AirflowHome, AssetEventRecord
from knit_devtools.services import ServiceError
from knit_devtools.stack import DEFAULT_INTEGRATION_ID, Stack
from knit_provider.chaining import TABLE_COUNTS
from knit_provider.data_types import DataTypeSpec, enabled
from knit_provider.data_types.registry import UnknownDataTypeError
from knit_provider.settings import Schemas, quote_ident

DEMO_DIR = ROOT / ".demo"
PG_DATA = DEMO_DIR / "pgdata"
DATABASE_URL_ENV = "KNIT_DEMO_DATABASE_URL"
# A closed job still has applications, and an initial sync leaves inactive records out: the jobs'
# initial sync asks for them too, so that every application joins to its job.
INITIAL_CONF: dict[str, dict[str, Any]] = {"ats_jobs": {"include_inactive_records": True}}


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


def last_run(conn: Any, integration_id: str, spec: DataTypeSpec, schemas: Schemas | None = None) -> str:
    """One line on the latest run of ``spec``'s type: its id, record events landed, whether normalized."""
    schemas = schemas or Schemas.from_env()
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT sync_run_id, sync_type, record_events, normalized_at IS NOT NULL "
            f"FROM {quote_ident(schemas.landing)}.sync_runs "
            "WHERE integration_id = %s AND sync_data_type = %s ORDER BY first_seq DESC LIMIT 1",
            (integration_id, spec.name),
        )
        found = cur.fetchone()
        if found is None:
            return f"no {spec.name} run landed"
        run_id, sync_type, landed, normalized = found
        line = f"{sync_type} run {run_id}: {landed} record events landed"
        if not normalized:  # then the ledger (and its schema) may not exist yet
            return f"{line}, NOT normalized"
        cur.execute(
            f"SELECT records_changed FROM {quote_ident(schemas.target)}.normalized_runs WHERE sync_run_id = %s",
            (run_id,),
        )
        (changed,) = cur.fetchone()
    return f"{line}, normalized ({changed} {spec.records} changed)"


def format_extra(spec: DataTypeSpec, event: AssetEventRecord | None) -> list[str]:
    """Lines on the asset event a DAG run's ``publish`` emitted: its extra's keys (``knit_provider.chaining``),
    then its rows per table, one line each; a line saying so when there was none."""
    if event is None:
        return [f"NO asset event of {spec.asset_uri} from this run"]
    extra = event.extra
    lines = [
        f"asset event {spec.asset_uri} (id {event.id}), extra: data_type {extra.get('data_type')}, "
        f"integrations {json.dumps(extra.get('integrations'))}, sync_runs {json.dumps(extra.get('sync_runs'))}, "
        f"change_watermark {extra.get('change_watermark')}"
    ]
    tables: dict[str, dict[str, int]] = extra.get("tables") or {}
    width = max(len("table"), *map(len, tables))
    lines.append(f"  {'table':<{width}}" + "".join(f"  {key:>8}" for key in TABLE_COUNTS))
    # In the type's order (its record table first), not the JSON's (Postgres orders jsonb keys by length).
    rank = {table: n for n, table in enumerate(spec.tables)}
    ordered = sorted(tables, key=lambda table: (rank.get(table, len(rank)), table))
    lines += [
        f"  {table:<{width}}" + "".join(f"  {tables[table].get(key, 0):>{max(len(key), 8)},}" for key in TABLE_COUNTS)
        for table in ordered
    ]
    return lines


def _run_dag(
    home: AirflowHome, stack: Stack, spec: DataTypeSpec, conf: dict[str, Any], integration_id: str, log_path: Path
) -> list[str]:
    """One ``airflow dags test`` run of ``spec``'s DAG (its whole output goes to ``log_path``); what it did, and
    the extra of the asset event its ``publish`` emitted."""
    import psycopg2

    # Read from the home's metadata database (what a DAG scheduled on the asset receives), not from the
    # publish task's XCom: the event is what downstream DAGs are given. The newest one before the run
    # tells the run's own event apart (a home runs its DAG once at a time).
    before = home.latest_asset_event(spec.asset_name, spec.dag_id)
    done = home.dags_test(spec.dag_id, {"integration_ids": [integration_id], **conf}, check=False)
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise AirflowCommandError(
            f"airflow dags test {spec.dag_id} failed (exit {done.returncode}); "
            f"the whole log is in {log_path}; its end:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    conn = psycopg2.connect(stack.database_url)
    try:
        line = last_run(conn, integration_id, spec)
    finally:
        conn.close()
    event = home.latest_asset_event(spec.asset_name, spec.dag_id, after=before.id if before else 0)
    # The DAG succeeded, so its reconcile task (after normalize) found Knit's counts and the tables agree.
    return [f"{line}; reconciled (log: {log_path.relative_to(ROOT)})", *(f"  {x}" for x in format_extra(spec, event))]


def _airflow_homes(specs: Sequence[DataTypeSpec], env: dict[str, str]) -> dict[str, AirflowHome]:
    """An Airflow home per data type, so that their DAG runs can go at once (SQLite takes one writer at a
    time); the first home is migrated and the others start from a copy of its metadata database."""
    first = AirflowHome(DEMO_DIR / "airflow" / specs[0].name, env=env).migrate()
    homes = {specs[0].name: first}
    for spec in specs[1:]:
        home = AirflowHome(DEMO_DIR / "airflow" / spec.name, env=env)
        shutil.copyfile(first.path / "airflow.db", home.path / "airflow.db")
        homes[spec.name] = home
    return homes


def run_demo(applications: int, database_url: str | None, seed: int, specs: Sequence[DataTypeSpec]) -> int:
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
        with steps("airflow db migrate (SQLite in .demo/airflow, a home per data type)"):
            homes = _airflow_homes(specs, stack.airflow_env())
        # The initial syncs of every type at once, as Knit starts them when an integration connects; then
        # a delta of each, at once too.
        with ThreadPoolExecutor(len(specs)) as pool:
            for sync in ("initial", "delta"):
                with steps(f"{sync} syncs: airflow dags test {', '.join(spec.dag_id for spec in specs)}, at once"):
                    runs = [
                        pool.submit(
                            _run_dag,
                            homes[spec.name],
                            stack,
                            spec,
                            INITIAL_CONF.get(spec.name, {}) if sync == "initial" else {},
                            integration_id,
                            logs / f"{spec.name}-{sync}-sync.log",
                        )
                        for spec in specs
                    ]
                    for run in runs:
                        print("\n".join(f"    {line}" for line in run.result()))
        with steps("read the report"):
            import psycopg2

            conn = psycopg2.connect(stack.database_url)
            try:
                report = collect(conn, integration_id, data_types=specs)
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
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV) or None,
        help=f"use this Postgres database instead of an embedded server (default: ${DATABASE_URL_ENV})",
    )
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
    try:
        specs = enabled()
    except UnknownDataTypeError as exc:
        parser.error(str(exc))
    return run_demo(args.applications, args.database_url, args.seed, specs)


if __name__ == "__main__":
    sys.exit(main())
