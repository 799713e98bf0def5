"""Which runs to normalize: one by id, every pending one, or those completed in a time window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from knit_provider.data_types.registry import UnknownDataTypeError, get
from knit_provider.settings import ATS_APPLICATIONS, Schemas, quote_ident


class RunNotFoundError(LookupError):
    """No event of this sync run has landed."""


class RunNotCompleteError(ValueError):
    """The run's ``sync.events.allConsumed`` has not landed, so some of its events may still be on the way."""


class WrongDataTypeError(ValueError):
    """The run carries a data type the provider has no spec for (``knit_provider/data_types/``)."""


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
    """Refuse a run of a data type without a spec always, and an incomplete run unless forced."""
    try:
        get(run.sync_data_type)
    except UnknownDataTypeError as exc:
        raise WrongDataTypeError(f"Sync run {run.sync_run_id!r} cannot be normalized: {exc}") from exc
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
    conn: Any,
    schemas: Schemas,
    condition: str,
    params: list[Any],
    integration_ids: Sequence[str] | None,
    data_type: str,
) -> list[str]:
    """Run ids of one data type in the landing store meeting ``condition``, oldest first (by first_seq)."""
    where, filter_params = _integration_filter(integration_ids)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT sync_run_id FROM {quote_ident(schemas.landing)}.sync_runs "
            f"WHERE sync_data_type = %s AND {condition}{where} ORDER BY first_seq",
            [data_type, *params, *filter_params],
        )
        rows = cur.fetchall()
    conn.commit()
    return [row[0] for row in rows]


def pending_runs(
    conn: Any,
    schemas: Schemas,
    integration_ids: Sequence[str] | None = None,
    data_type: str = ATS_APPLICATIONS,
) -> list[str]:
    """Every completed run of ``data_type`` not yet normalized, oldest first (by its place in time)."""
    return _select_runs(
        conn, schemas, "complete_at IS NOT NULL AND normalized_at IS NULL", [], integration_ids, data_type
    )


def runs_completed_between(
    conn: Any,
    schemas: Schemas,
    start: datetime,
    end: datetime,
    integration_ids: Sequence[str] | None = None,
    data_type: str = ATS_APPLICATIONS,
) -> list[str]:
    """Runs of ``data_type`` that completed (``complete_at``) in ``[start, end)``, oldest first: a backfill's share.

    Adjacent windows never share a run, so backfilling consecutive intervals normalizes each run once.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError(f"Interval bounds must be timezone-aware, got {start!r} and {end!r}.")
    return _select_runs(
        conn, schemas, "complete_at >= %s AND complete_at < %s", [start, end], integration_ids, data_type
    )
