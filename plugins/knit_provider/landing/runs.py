"""Which sync run a waiter means, and where that run stands: one definition for the sensor and the triggers.

The sensor checks with psycopg2 (it runs in a worker), the triggers with asyncpg (they run in the
triggerer's event loop). Both run the same SQL files, written once with ``%(name)s`` placeholders and
converted to ``$n`` for asyncpg, so the two paths cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from knit_provider.exceptions import KnitInputError
from knit_provider.inputs import optional_text, parse_time
from knit_provider.settings import Schemas
from knit_provider.sql import load_sql

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def to_asyncpg(sql: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """Turn ``%(name)s`` placeholders into ``$1..$n`` (a name used twice keeps one number)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, sql), [params[name] for name in names]


@dataclass(frozen=True)
class RunSelector:
    """The run a waiter is after: by id when Knit gave one, else the first run of the job since a time."""

    sync_job_id: str | None
    sync_run_id: str | None = None
    started_after: datetime | None = None

    @classmethod
    def create(cls, sync_job_id: Any, sync_run_id: Any = None, started_after: Any = None) -> RunSelector:
        """Build from raw (possibly templated) values, refusing a selector that could match the wrong run."""
        selector = cls(
            optional_text(sync_job_id), optional_text(sync_run_id), parse_time(started_after, "started_after")
        )
        if selector.sync_run_id is None and (selector.sync_job_id is None or selector.started_after is None):
            raise KnitInputError(
                "Cannot tell which sync run to wait for: give sync_run_id, or both sync_job_id and "
                f"started_after (got sync_job_id={selector.sync_job_id!r}, started_after=None). Feed them "
                "from StartSyncOperator's XCom; waiting for 'any newer run' could pick another DAG run's sync."
            )
        return selector

    def describe(self) -> str:
        if self.sync_run_id is not None:
            job = f" of job {self.sync_job_id}" if self.sync_job_id else ""
            return f"run {self.sync_run_id}{job}"
        assert self.started_after is not None
        return f"the first run of job {self.sync_job_id} since {self.started_after.isoformat()}"


@dataclass(frozen=True)
class RunState:
    """One row of ``sync_runs``: how far a run has got."""

    sync_run_id: str
    sync_job_id: str | None
    integration_id: str | None
    sync_data_type: str | None
    record_events: int
    processed: int | None
    emitted: int | None
    consumed: int | None
    processed_complete: bool | None
    first_received_at: datetime
    last_received_at: datetime
    all_consumed_at: datetime | None
    complete_at: datetime | None = None
    completed_by: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunState:
        return cls(
            sync_run_id=row["sync_run_id"],
            sync_job_id=row["sync_job_id"],
            integration_id=row["integration_id"],
            sync_data_type=row["sync_data_type"],
            record_events=int(row["record_events"]),
            processed=row["processed_count"],
            emitted=row["emitted_count"],
            consumed=row["consumed_count"],
            processed_complete=row["processed_complete"],
            first_received_at=row["first_received_at"],
            last_received_at=row["last_received_at"],
            all_consumed_at=row["all_consumed_at"],
            complete_at=row["complete_at"],
            completed_by=row["completed_by"],
        )

    @property
    def complete(self) -> bool:
        """allConsumed landed, or a final processed report that emitted nothing (``land_events`` decides)."""
        return self.complete_at is not None

    def ending(self) -> str:
        """How the run completed, in words for logs."""
        if self.completed_by == "processed":
            return "Knit's final sync.events.processed reported emitted: 0 (nothing to wait for)"
        return "sync.events.allConsumed landed"

    def counts(self) -> dict[str, int | None]:
        return {
            "record_events": self.record_events,
            "processed": self.processed,
            "emitted": self.emitted,
            "consumed": self.consumed,
        }

    def progress(self) -> str:
        """One line for logs and timeout reports: what has landed and what Knit last said."""
        if self.processed is None:
            knit = "Knit has not reported counts yet"
        else:
            final = "final" if self.processed_complete else "not final"
            knit = f"Knit last reported processed={self.processed}, emitted={self.emitted} ({final})"
        return f"{self.record_events} record events of run {self.sync_run_id} landed; {knit}"


def completion(state: RunState) -> dict[str, Any]:
    """What a finished wait hands downstream (the sensor's XCom): the run and its counts."""
    return {"sync_job_id": state.sync_job_id, "sync_run_id": state.sync_run_id, **state.counts()}


def timeout_report(selector: RunSelector, waited: str, state: RunState | None, error: str | None = None) -> str:
    """Why a wait ended without allConsumed: the same words from the trigger and from a poking sensor."""
    landed = state.progress() if state else "no event of it had landed"
    report = f"Timed out after {waited} waiting for sync.events.allConsumed of {selector.describe()}: {landed}."
    if error:
        report += f" The landing database was unreachable at the end ({error})."
    return report


def mismatch(selector: RunSelector, state: RunState) -> str | None:
    """Say why a run found by id is not the one asked for (it belongs to another job), else None."""
    if selector.sync_job_id and state.sync_job_id and state.sync_job_id != selector.sync_job_id:
        return (
            f"Run {state.sync_run_id} belongs to sync job {state.sync_job_id}, not {selector.sync_job_id}: "
            "check the sync_run_id and sync_job_id passed to the sensor."
        )
    return None


def runs_query(selectors: Sequence[RunSelector], schemas: Schemas) -> tuple[str, dict[str, Any]]:
    """The one statement that finds the runs of many waiters (``sql/landing/runs_wanted.sql``)."""
    return load_sql("landing/runs_wanted.sql", schemas), {
        "sync_run_ids": [selector.sync_run_id for selector in selectors],
        "sync_job_ids": [selector.sync_job_id for selector in selectors],
        "started_afters": [selector.started_after for selector in selectors],
    }


def _by_waiter(rows: Sequence[Mapping[str, Any]], count: int) -> list[RunState | None]:
    states: list[RunState | None] = [None] * count
    for row in rows:
        states[int(row["waiter"]) - 1] = RunState.from_row(row)
    return states


def find_run(cursor: Any, selector: RunSelector, schemas: Schemas) -> RunState | None:
    """Look the run up over a psycopg2 ``RealDictCursor``."""
    sql, params = runs_query([selector], schemas)
    cursor.execute(sql, params)
    return _by_waiter(cursor.fetchall(), 1)[0]


async def afind_runs(
    conn: Any, selectors: Sequence[RunSelector], schemas: Schemas, timeout: float | None = None
) -> list[RunState | None]:
    """Look many runs up in one statement over an asyncpg connection; one state (or None) per selector."""
    query, args = to_asyncpg(*runs_query(selectors, schemas))
    return _by_waiter(await conn.fetch(query, *args, timeout=timeout), len(selectors))


async def aclaim_completed_runs(
    conn: Any, schemas: Schemas, data_type: str, reannounce_after: float | None, limit: int = 1
) -> list[dict[str, Any]]:
    """Mark up to ``limit`` completed, unnormalized, unannounced runs as announced; return them, oldest first.

    A run whose announcement is older than ``reannounce_after`` seconds (and still not normalized) is
    returned again; ``None`` never re-announces.
    """
    query, args = to_asyncpg(
        load_sql("landing/claim_completed_runs.sql", schemas),
        {"data_type": data_type, "reannounce_after": reannounce_after, "batch_size": limit},
    )
    rows = await conn.fetch(query, *args)
    return sorted((dict(row) for row in rows), key=lambda row: (row["complete_at"], row["sync_run_id"]))
