"""What the Knit syncs page shows: recent runs from the landing store, and the DAG runs that handled them.

Read-only. The landing store is read with two queries (``sql/ui/``) that never scan the events
table; Airflow's metadata database is read for the DAG runs that started or normalized each run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from knit_provider.chaining import TABLE_COUNTS
from knit_provider.landing.integrations import Integration
from knit_provider.settings import Schemas
from knit_provider.sql import load_sql

#: How many runs of each integration the page lists, newest first.
RUNS_PER_INTEGRATION = 10
#: How many of the newest unfinished runs get a chart, and how many steps a chart has at most.
CHARTED_RUNS = 3
CHART_STEPS = 40
#: How far back DAG runs are looked for (XComs and asset events, newest first).
DAG_RUN_LOOKBACK = 1000


@dataclass(frozen=True)
class DagRunLink:
    """A DAG run that handled a sync run: started it, waited for it or normalized it."""

    dag_id: str
    run_id: str
    state: str | None
    role: str


@dataclass
class SyncRun:
    """One row of ``sync_runs`` as the page shows it."""

    sync_run_id: str
    sync_job_id: str | None
    integration_id: str | None
    data_type: str | None
    sync_type: str | None
    first_received_at: datetime
    last_received_at: datetime
    record_events: int
    processed: int | None
    emitted: int | None
    consumed: int | None
    knit_started_at: datetime | None
    knit_completed_at: datetime | None
    complete_at: datetime | None
    completed_by: str | None
    normalized_at: datetime | None
    #: Dead letters of the run not replayed yet; None when this role may not read them.
    dead_letters: int | None = None
    #: From the ledger (``normalized_runs``): records the run named, and those whose row it changed;
    #: None while it is not normalized, or when the ledger cannot be read.
    records: int | None = None
    records_changed: int | None = None
    #: Of its last normalization, from the ledger too: the change feed's value (``knit_changed_seq`` of the rows it
    #: changed) and the rows per table ({table: {inserted, updated, soft_deleted, deleted}}, what its asset event
    #: carried); None as well for a run normalized before the change feed.
    changed_seq: int | None = None
    table_changes: dict[str, dict[str, int]] | None = None
    dag_runs: list[DagRunLink] = field(default_factory=list)
    #: Cumulative events landed over time, for the runs that get a chart.
    progress: list[tuple[datetime, int]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.complete_at is not None

    @property
    def started(self) -> datetime:
        """Knit's start time when it reported one, else when the first event landed."""
        return self.knit_started_at or self.first_received_at

    @property
    def to_normalized(self) -> timedelta | None:
        """From the first landed event to normalization: how stale the tables were for this run."""
        return self.normalized_at - self.first_received_at if self.normalized_at else None

    @property
    def missing(self) -> int | None:
        """Record events Knit emitted that did not land (never negative); None while Knit has not said."""
        return None if self.emitted is None else max(self.emitted - self.record_events, 0)


def recent_runs(
    conn: Any, schemas: Schemas, per_integration: int = RUNS_PER_INTEGRATION, data_type: str | None = None
) -> list[SyncRun]:
    """The newest ``per_integration`` runs of every integration, grouped by integration (psycopg2 ``conn``);
    with ``data_type``, the newest of that type only. A run landed without a data type is shown, and
    filtered, as the type the normalizer reads it as (``data_types.get(None)``)."""
    from knit_provider import data_types

    params = {"per_integration": per_integration, "data_type": data_type, "untyped": data_types.get(None).name}
    with conn.cursor() as cur:
        cur.execute(load_sql("ui/recent_runs.sql", schemas), params)
        return [SyncRun(*row) for row in cur.fetchall()]


def registry(conn: Any, schemas: Schemas) -> list[Integration] | None:
    """Every integration of the registry, by id; None when this role may not read it (psycopg2 ``conn``)."""
    import psycopg2.errors

    from knit_provider.landing.integrations import list_integrations

    with conn.cursor() as cur:
        try:
            return list_integrations(cur, schemas)
        except psycopg2.errors.InsufficientPrivilege:
            conn.rollback()
            return None


def add_dead_letters(conn: Any, schemas: Schemas, runs: Sequence[SyncRun]) -> bool:
    """Fill ``dead_letters`` of each run; False (and left None) when this role may not read them."""
    from knit_provider.landing.dead_letters import DeadLettersUnreadableError, check_readable

    with conn.cursor() as cur:
        try:
            check_readable(cur, schemas)
        except DeadLettersUnreadableError:
            return False
        cur.execute(load_sql("ui/dead_letter_counts.sql", schemas), {"sync_run_ids": [r.sync_run_id for r in runs]})
        counts = dict(cur.fetchall())
    for run in runs:
        run.dead_letters = int(counts.get(run.sync_run_id, 0))
    return True


def add_normalized(conn: Any, schemas: Schemas, runs: Sequence[SyncRun]) -> bool:
    """Fill ``records``, ``records_changed``, ``changed_seq`` and ``table_changes`` of the normalized runs from
    the ledger; False (all left None) when there is no ledger yet (nothing normalized) or this role may not
    read it."""
    import psycopg2.errors

    with conn.cursor() as cur:
        try:
            cur.execute(load_sql("ui/normalized_counts.sql", schemas), {"sync_run_ids": [r.sync_run_id for r in runs]})
        except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.UndefinedTable):
            conn.rollback()
            return False
        ledger = {row[0]: row[1:] for row in cur.fetchall()}
    for run in runs:
        records, changed, changed_seq, tables = ledger.get(run.sync_run_id, (None, None, None, None))
        run.records, run.records_changed, run.changed_seq = records, changed, changed_seq
        run.table_changes = _table_changes(tables)
    return True


def _table_changes(value: Any) -> dict[str, dict[str, int]] | None:
    """The ledger's ``table_changes`` (decoded JSON) with every count of ``TABLE_COUNTS`` as an int (0 when
    absent); None when the ledger has none (a run normalized before the change feed)."""
    if not isinstance(value, dict):
        return None
    return {
        str(table): {key: int(counts.get(key) or 0) for key in TABLE_COUNTS}
        for table, counts in value.items()
        if isinstance(counts, dict)
    }


def run_progress(conn: Any, schemas: Schemas, sync_run_id: str, steps: int = CHART_STEPS) -> list[tuple[datetime, int]]:
    """Points (time, events landed so far) of one run, the last one at its latest event."""
    with conn.cursor() as cur:
        cur.execute(load_sql("ui/run_progress.sql", schemas), {"sync_run_id": sync_run_id, "buckets": steps})
        rows = cur.fetchall()
    points: list[tuple[datetime, int]] = []
    landed = 0
    for events, first_received_at in rows:
        points.append((first_received_at, landed))
        landed += int(events)
    return points


def add_progress(conn: Any, schemas: Schemas, runs: Sequence[SyncRun], charted: int = CHARTED_RUNS) -> None:
    """Fill ``progress`` of the newest unfinished runs (the ones whose chart moves)."""
    running = sorted((r for r in runs if not r.complete), key=lambda r: r.last_received_at, reverse=True)
    for run in running[:charted]:
        run.progress.extend(run_progress(conn, schemas, run.sync_run_id))
        run.progress.append((run.last_received_at, run.record_events))


#: Operators whose XCom names the sync runs their task handled, and what the task did to them. Keyed by
#: the class name Airflow records in ``task_instance.operator``: task instances recorded before the
#: Knit prefix was added carry the old names, so those stay listed for the history they describe.
_OPERATOR_ROLES = {
    "StartSyncOperator": "started",
    "KnitAllConsumedSensor": "waited for",
    "KnitNormalizeRunsOperator": "normalized",
    "AllConsumedSensor": "waited for",
    "NormalizeRunsOperator": "normalized",
}


def _role(operator: str, value: Any) -> str:
    """What the task did to the run; for a start, who started it (the XCom's ``started_by``)."""
    role = _OPERATOR_ROLES[operator]
    if role != "started" or not isinstance(value, dict):
        return role
    waited = value.get("waited_seconds")
    if value.get("started_by") == "knit":
        return "followed (Knit started it)"
    if value.get("started_by") == "airflow" and isinstance(waited, (int, float)) and waited > 0:
        return f"started by Airflow after {waited / 60:.0f} min"
    return role


def _handled_run_ids(value: Any) -> list[str]:
    """Sync run ids in an XCom of one of those operators: ``sync_run_id``, or ``runs[].sync_run_id``."""
    if not isinstance(value, dict):
        return []
    found = [value.get("sync_run_id")]
    runs = value.get("runs")
    if isinstance(runs, list):
        found += [run.get("sync_run_id") for run in runs if isinstance(run, dict) and not run.get("skipped")]
    return [run_id for run_id in found if isinstance(run_id, str)]


def dag_runs_by_sync_run(
    session: Any, sync_run_ids: Iterable[str], since: datetime | None = None, lookback: int = DAG_RUN_LOOKBACK
) -> dict[str, list[DagRunLink]]:
    """The DAG runs of Airflow's metadata database that handled each sync run, as far as it records them.

    Two traces are followed, each over the newest ``lookback`` entries: the XComs that Knit's
    operators returned (``StartSyncOperator`` and ``KnitAllConsumedSensor`` name the run they started
    or waited for, ``KnitNormalizeRunsOperator`` the runs it normalized), and the asset-watcher events
    whose payload names a run, with the DAG runs they triggered. A DAG run is listed once per sync
    run, with the first thing it did to it. ``since`` (the oldest run shown, less a margin) keeps
    the search on Airflow's indexes (``dag_run.run_after``, then each run's task instances and
    XComs) however large the metadata database has grown.
    """
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, select
    from sqlalchemy.orm import selectinload

    wanted = set(sync_run_ids)
    found: dict[str, list[DagRunLink]] = {}

    def add(sync_run_id: str, dag_id: str, run_id: str, state: Any, role: str) -> None:
        links = found.setdefault(sync_run_id, []) if sync_run_id in wanted else None
        if links is not None and all((link.dag_id, link.run_id) != (dag_id, run_id) for link in links):
            links.append(DagRunLink(dag_id, run_id, str(state) if state else None, role))

    handled = session.execute(
        select(
            XComModel.value, TaskInstance.operator, TaskInstance.map_index, DagRun.dag_id, DagRun.run_id, DagRun.state
        )
        .join(
            TaskInstance,
            and_(
                TaskInstance.dag_id == XComModel.dag_id,
                TaskInstance.run_id == XComModel.run_id,
                TaskInstance.task_id == XComModel.task_id,
                TaskInstance.map_index == XComModel.map_index,
            ),
        )
        .join(DagRun, DagRun.id == XComModel.dag_run_id)
        .where(
            XComModel.key == "return_value",
            TaskInstance.operator.in_(list(_OPERATOR_ROLES)),
            *([DagRun.run_after >= since] if since else []),
        )
        .order_by(XComModel.timestamp.desc())
        .limit(lookback)
    ).all()
    # Knit's answer to sync.start may name no run: the start is then told by the wait after it (same DAG
    # run and map index), which names the run it waited for.
    started: dict[tuple[str, str, int], Any] = {}
    for row in reversed(handled):  # oldest first; a row has the ``value`` attribute deserialize_value reads
        value = XComModel.deserialize_value(row)
        task = (row.dag_id, row.run_id, row.map_index)
        role = _role(row.operator, value)
        if row.operator == "StartSyncOperator":
            started[task] = value
        elif role == "waited for" and task in started:
            role = _role("StartSyncOperator", started[task])
        for sync_run_id in _handled_run_ids(value):
            add(sync_run_id, row.dag_id, row.run_id, row.state, role)

    events = session.scalars(
        select(AssetEvent)
        .options(selectinload(AssetEvent.created_dagruns))
        .where(*([AssetEvent.timestamp >= since] if since else []))
        .order_by(AssetEvent.id.desc())
        .limit(lookback)
    )
    for event in events:
        payload = (event.extra or {}).get("payload")
        for sync_run_id in _handled_run_ids(payload):
            for dag_run in event.created_dagruns:
                add(sync_run_id, dag_run.dag_id, dag_run.run_id, dag_run.state, "triggered by its completion")
    return found
