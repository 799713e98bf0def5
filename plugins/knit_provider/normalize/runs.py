"""Which runs to normalize: one by id, every pending one, or those completed in a time window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from knit_provider.settings import ATS_APPLICATIONS, Schemas, quote_ident


class RunNotFoundError(LookupError):
    """No event of this sync run has landed."""


class RunNotCompleteError(ValueError):
    """The run's ``sync.events.allConsumed`` has not landed, so some of its events may still be on the way."""


class WrongDataTypeError(ValueError):
    """The run carries another data type than the ATS applications this normalization understands."""


@dataclass(frozen=True)
class LandedRun:
    """What the landing store knows about one run, as normalization needs it."""

    sync_run_id: str
    integration_id: str | None
    sync_data_type: str | None
    sync_type: str | None
    first_seq: int
    started_at: datetime | None
    complete_at: datetime | None
    normalized_at: datetime | None
    record_events: int
    emitted_count: int | None
    consumed_count: int | None
    # When its first / latest event landed: its events lie in the partitions of that span.
    first_received_at: datetime
    last_received_at: datetime
    # Set when retention removed the run's landed events: there is nothing left to normalize.
    events_pruned_at: datetime | None

    @property
    def complete(self) -> bool:
        return self.complete_at is not None


_RUN_COLUMNS = (
    "sync_run_id, integration_id, sync_data_type, sync_type, first_seq, started_at, complete_at, "
    "normalized_at, record_events, emitted_count, consumed_count, first_received_at, last_received_at, "
    "events_pruned_at"
)


def get_run(cur: Any, schemas: Schemas, run_id: str) -> LandedRun:
    """Read a run's row from ``sync_runs``; raise if it never landed.

    No row lock: the receiver updates this row while events land, and must never wait behind a
    long normalization (normalizers serialize on advisory locks instead).
    """
    cur.execute(
        f"SELECT {_RUN_COLUMNS} FROM {quote_ident(schemas.landing)}.sync_runs WHERE sync_run_id = %s", (run_id,)
    )
    row = cur.fetchone()
    if row is None:
        raise RunNotFoundError(
            f"Sync run {run_id!r} has no landed events in {schemas.landing}.sync_runs: check the run id, "
            "and that the webhook receiver writes to this database and schema."
        )
    return LandedRun(*row)


def check_normalizable(run: LandedRun, *, force: bool) -> None:
    """Refuse a run of another data type always, and an incomplete run unless forced."""
    if run.sync_data_type not in (None, ATS_APPLICATIONS):
        raise WrongDataTypeError(
            f"Sync run {run.sync_run_id!r} carries {run.sync_data_type!r}; only {ATS_APPLICATIONS!r} "
            "runs can be normalized."
        )
    if not run.complete and not force:
        raise RunNotCompleteError(
            f"Sync run {run.sync_run_id!r} is not complete: neither its sync.events.allConsumed nor a final "
            f"sync.events.processed with emitted: 0 has landed ({run.record_events} record events so far). "
            "Wait for it (KnitAllConsumedSensor), or pass "
            "force=True / --force to normalize what has landed; the run stays pending and is "
            "normalized again once complete."
        )


def _integration_filter(integration_ids: Sequence[str] | None) -> tuple[str, list[Any]]:
    if not integration_ids:
        return "", []
    return " AND integration_id = ANY(%s)", [list(integration_ids)]


def _select_runs(
    conn: Any, schemas: Schemas, condition: str, params: list[Any], integration_ids: Sequence[str] | None
) -> list[str]:
    """Applications run ids of the landing store meeting ``condition``, oldest first (by first_seq)."""
    where, filter_params = _integration_filter(integration_ids)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT sync_run_id FROM {quote_ident(schemas.landing)}.sync_runs "
            f"WHERE sync_data_type = %s AND {condition}{where} ORDER BY first_seq",
            [ATS_APPLICATIONS, *params, *filter_params],
        )
        rows = cur.fetchall()
    conn.commit()
    return [row[0] for row in rows]


def pending_runs(conn: Any, schemas: Schemas, integration_ids: Sequence[str] | None = None) -> list[str]:
    """Every completed applications run not yet normalized, oldest first (by its place in time)."""
    return _select_runs(conn, schemas, "complete_at IS NOT NULL AND normalized_at IS NULL", [], integration_ids)


def runs_completed_between(
    conn: Any, schemas: Schemas, start: datetime, end: datetime, integration_ids: Sequence[str] | None = None
) -> list[str]:
    """Applications runs that completed (``complete_at``) in ``[start, end)``, oldest first: a backfill's share.

    Adjacent windows never share a run, so backfilling consecutive intervals normalizes each run once.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError(f"Interval bounds must be timezone-aware, got {start!r} and {end!r}.")
    return _select_runs(conn, schemas, "complete_at >= %s AND complete_at < %s", [start, end], integration_ids)
