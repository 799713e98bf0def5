"""Who started a sync run, and what each try of a StartSyncOperator task did (``sql/landing/0006_sync_starts.sql``).

``sync.start`` is not idempotent: an attempt whose answer is lost may have started a run. So a task
records its request before sending it and the run it got after, keyed by task instance; a retried
try reads that record first (:func:`read_attempt`). Whether a run of an integration began since a time
(:func:`find_begun`, and :func:`afind_begun` for the triggerer) is how a lost answer is recovered and
how onboarding adopts Knit's own initial sync.

psycopg2 cursors with tuple rows in the worker; the asyncpg twin runs the same SQL file
(:func:`knit_provider.landing.runs.to_asyncpg`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from knit_provider.landing.runs import to_asyncpg
from knit_provider.settings import Schemas
from knit_provider.sql import load_sql

StartedBy = Literal["airflow", "knit"]
# How often a worker looks again for a run that may have begun (a first event takes a while to land).
BEGUN_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class AttemptKey:
    """The task instance a start belongs to: one record per DAG run, task and map index."""

    dag_id: str
    dag_run_id: str
    task_id: str
    map_index: int


@dataclass(frozen=True)
class StartAttempt:
    """What earlier tries of a task instance did: requested (maybe sent) and, once answered, the run."""

    first_requested_at: datetime
    answered: bool
    sync_job_id: str | None
    sync_run_id: str | None
    started_by: StartedBy | None
    waited_seconds: float | None


@dataclass(frozen=True)
class BegunRun:
    """A run found by integration, data type and time: its ids and when its first event landed."""

    sync_run_id: str
    sync_job_id: str
    sync_type: str | None
    first_received_at: datetime


def read_attempt(cur: Any, schemas: Schemas, key: AttemptKey) -> StartAttempt | None:
    """The record of earlier tries of ``key``, or None when no try has recorded anything."""
    cur.execute(load_sql("landing/sync_start_read.sql", schemas), asdict(key))
    row = cur.fetchone()
    return None if row is None else StartAttempt(*row)


def record_request(cur: Any, schemas: Schemas, key: AttemptKey, integration_id: str, data_type: str) -> datetime:
    """Record that ``key`` is about to send sync.start; return the first try's request time (database clock)."""
    cur.execute(
        load_sql("landing/sync_start_request.sql", schemas),
        {**asdict(key), "integration_id": integration_id, "data_type": data_type},
    )
    first_requested_at: datetime = cur.fetchone()[0]
    return first_requested_at


def record_answer(
    cur: Any,
    schemas: Schemas,
    key: AttemptKey,
    *,
    integration_id: str,
    data_type: str,
    sync_job_id: str,
    sync_run_id: str | None,
    started_by: StartedBy,
    waited_seconds: float,
    requested_at: datetime | None = None,
) -> None:
    """Record the run ``key`` ended up with; a later try reuses it without calling Knit.

    ``requested_at`` stands for the request time of a row written now (an adopted run: nothing was sent).
    """
    cur.execute(
        load_sql("landing/sync_start_answer.sql", schemas),
        {
            **asdict(key),
            "integration_id": integration_id,
            "data_type": data_type,
            "sync_job_id": sync_job_id,
            "sync_run_id": sync_run_id,
            "started_by": started_by,
            "waited_seconds": waited_seconds,
            "requested_at": requested_at,
        },
    )


def _begun_params(integration_id: str, data_type: str, since: datetime, sync_type: str | None) -> dict[str, Any]:
    return {"integration_id": integration_id, "data_type": data_type, "since": since, "sync_type": sync_type}


def find_begun(
    cur: Any, schemas: Schemas, integration_id: str, data_type: str, since: datetime, sync_type: str | None = None
) -> BegunRun | None:
    """The first run of the integration and data type whose first event landed at or after ``since``."""
    cur.execute(load_sql("landing/run_began.sql", schemas), _begun_params(integration_id, data_type, since, sync_type))
    row = cur.fetchone()
    return None if row is None else BegunRun(*row)


def wait_for_begun(
    conn: Any,
    schemas: Schemas,
    integration_id: str,
    data_type: str,
    since: datetime,
    sync_type: str | None,
    grace: float,
) -> BegunRun | None:
    """Look for the run of :func:`find_begun` until it has begun or ``grace`` seconds have passed.

    Polls over an autocommit psycopg2 connection (each look sees what has committed since), at most every
    :data:`BEGUN_POLL_SECONDS`; bounded by ``grace``.
    """
    deadline = time.monotonic() + grace
    while True:
        with conn.cursor() as cur:
            run = find_begun(cur, schemas, integration_id, data_type, since, sync_type)
        remaining = deadline - time.monotonic()
        if run is not None or remaining <= 0:
            return run
        time.sleep(min(BEGUN_POLL_SECONDS, remaining))


async def afind_begun(
    conn: Any, schemas: Schemas, integration_id: str, data_type: str, since: datetime, sync_type: str | None = None
) -> BegunRun | None:
    """:func:`find_begun` over an asyncpg connection (the triggerer's shared one)."""
    query, args = to_asyncpg(
        load_sql("landing/run_began.sql", schemas), _begun_params(integration_id, data_type, since, sync_type)
    )
    row: Mapping[str, Any] | None = await conn.fetchrow(query, *args)
    return None if row is None else BegunRun(**dict(row))


def run_goes_on(sync_run_id: str | None, sync_job_id: str | None) -> str:
    """What happens to a Knit run when the task that started or waited for it stops (cleared, killed, timed out).

    Knit's reference documents no call that pauses or stops a sync, so there is nothing to cancel.
    """
    run = sync_run_id or "(id not known yet)"
    return (
        f"Knit has no call to stop a sync: run {run} of job {sync_job_id or '(not known)'} goes on; "
        "the on-delivery DAG of its data type (knit_<data type>_on_delivery) normalizes it when it completes"
    )
