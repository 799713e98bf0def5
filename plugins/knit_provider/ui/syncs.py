"""What the Knit syncs page shows: recent runs from the landing store, and the DAG runs that handled them.

Read-only. The landing store is read with two queries (``sql/ui/``) that never scan the events
table; Airflow's metadata database is read for the DAG runs that started or normalized each run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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


@dataclass(frozen=True)
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
    dead_letters: int
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


def recent_runs(conn: Any, schemas: Schemas, per_integration: int = RUNS_PER_INTEGRATION) -> list[SyncRun]:
    """The newest ``per_integration`` runs of every integration, grouped by integration (psycopg2 ``conn``)."""
    with conn.cursor() as cur:
        cur.execute(load_sql("ui/recent_runs.sql", schemas), {"per_integration": per_integration})
        return [SyncRun(*row) for row in cur.fetchall()]


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


def _sync_run_id(value: Any) -> str | None:
    if isinstance(value, dict):
        found = value.get("sync_run_id")
        return found if isinstance(found, str) else None
    return None


def dag_runs_by_sync_run(session: Any, sync_run_ids: Iterable[str],
                         lookback: int = DAG_RUN_LOOKBACK) -> dict[str, list[DagRunLink]]:
    """The DAG runs of Airflow's metadata database that handled each sync run, as far as it records them.

    Two traces are followed: the XCom a ``StartSyncOperator`` task (any task id ending in
    ``start_sync``) returned, which holds the ``sync_run_id`` it started, and the asset-watcher
    events whose payload names a ``sync_run_id``, with the DAG runs they triggered. A backfill
    run that normalized a run again leaves no such trace and is not listed.
    """
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    wanted = set(sync_run_ids)
    found: dict[str, list[DagRunLink]] = {}

    def add(sync_run_id: str | None, link: DagRunLink) -> None:
        if sync_run_id in wanted and link not in found.setdefault(sync_run_id, []):
            found[sync_run_id].append(link)

    started = session.execute(
        select(XComModel.value, DagRun.dag_id, DagRun.run_id, DagRun.state)
        .join(DagRun, DagRun.id == XComModel.dag_run_id)
        .where(XComModel.key == "return_value", XComModel.task_id.like("%start_sync"))
        .order_by(XComModel.timestamp.desc())
        .limit(lookback)
    )
    for row in started:  # a row has the ``value`` attribute deserialize_value reads
        add(_sync_run_id(XComModel.deserialize_value(row)), DagRunLink(row.dag_id, row.run_id, row.state, "started"))

    events = session.scalars(
        select(AssetEvent).options(selectinload(AssetEvent.created_dagruns))
        .order_by(AssetEvent.id.desc()).limit(lookback)
    )
    for event in events:
        sync_run_id = _sync_run_id((event.extra or {}).get("payload"))
        for dag_run in event.created_dagruns:
            add(sync_run_id, DagRunLink(dag_run.dag_id, dag_run.run_id, dag_run.state, "normalized on delivery"))
    return found

