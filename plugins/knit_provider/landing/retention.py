"""Retention of the landing store: partitions ahead of the clock, and landed events removed once used.

The landing store keeps every landed event until retention removes it. ``prune`` removes the events of
runs that are normalized and whose last event landed longer ago than the retention, never those of a
run not yet normalized and never any inside the dedup window (a retention shorter than the window is
refused). A weekly partition goes whole (``DROP TABLE``) when every run with events in it qualifies;
otherwise the qualifying runs' rows are deleted. ``sync_runs`` and the normalized tables are kept: a
pruned run is marked (``events_pruned_at``) and a later normalization of it (a backfill) passes over it.
``maintain`` is what the daily maintenance DAG runs: partitions ahead, ids older than the dedup window
forgotten, and ``prune`` when a retention is set.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.errors

from knit_provider.exceptions import KnitInputError
from knit_provider.settings import DEDUP_WINDOW, Schemas, quote_ident
from knit_provider.sql import load_sql, load_statements

log = logging.getLogger(__name__)

RETENTION_ENV = "KNIT_LANDING_RETENTION"
# Longest wait for the lock a partition drop takes on events (inserts wait behind it meanwhile).
DROP_LOCK_TIMEOUT = "5s"
RETENTION_EXTRA = "retention"

_AGE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str, what: str = "age") -> timedelta:
    """Read ``30d``, ``12h`` or ``2w``; reject anything else saying what was given and what is accepted."""
    match = _AGE.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise KnitInputError(
            f"{what} {text!r} is not an age: write a positive whole number of hours, days or weeks, e.g. 30d, 12h, 2w."
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def age_text(age: timedelta) -> str:
    """An age as :func:`parse_age` reads it: ``30d``, or ``36h`` when not whole days."""
    hours = int(age.total_seconds() // 3600)
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def check_retention(age: timedelta, what: str = "retention") -> timedelta:
    """Refuse a retention shorter than the dedup window: the ids it remembers must keep their events."""
    if age < DEDUP_WINDOW:
        raise KnitInputError(
            f"{what} of {age_text(age)} is shorter than the dedup window ({DEDUP_WINDOW.days} days, Knit's four "
            f"days of retries and a margin): events inside it are never removed. Use at least {DEDUP_WINDOW.days}d."
        )
    return age


def retention_setting(extra: dict[str, Any] | None = None) -> timedelta | None:
    """The configured retention: ``$KNIT_LANDING_RETENTION``, else the landing connection's ``retention`` extra.

    ``None`` (neither set) keeps every landed event.
    """
    raw = os.environ.get(RETENTION_ENV) or (extra or {}).get(RETENTION_EXTRA)
    if raw in (None, ""):
        return None
    source = (
        f"${RETENTION_ENV}" if os.environ.get(RETENTION_ENV) else f"the landing connection's {RETENTION_EXTRA!r} extra"
    )
    return check_retention(parse_age(str(raw), f"retention ({source})"), f"retention ({source})")


def configured_retention(conn_id: str | None) -> timedelta | None:
    """:func:`retention_setting` with the extras of Airflow connection ``conn_id`` (``None``: environment only)."""
    if os.environ.get(RETENTION_ENV) or conn_id is None:
        return retention_setting()
    from airflow.sdk import BaseHook

    return retention_setting(BaseHook.get_connection(conn_id).extra_dejson)


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed (or, with ``dry_run``, would remove)."""

    cutoff: datetime
    dry_run: bool
    runs: int
    events_deleted: int
    partitions_dropped: list[str] = field(default_factory=list)
    # From the planner's statistics: counting a whole partition before dropping it would read it.
    partition_events_estimate: int = 0
    event_ids_forgotten: int = 0
    # Droppable, but the lock on events was not granted in time: dropped by the next pass.
    partitions_busy: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cutoff": self.cutoff.isoformat()}

    def describe(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        dropped = ", ".join(self.partitions_dropped) or "none"
        text = (
            f"prune (events landed before {self.cutoff.isoformat()}) {verb}: the events of {self.runs} normalized "
            f"runs: {self.events_deleted} deleted row by row, partitions dropped whole: {dropped} (about "
            f"{self.partition_events_estimate} events); {self.event_ids_forgotten} event ids past the dedup window "
            "forgotten"
        )
        if self.partitions_busy:
            text += f"; left for the next pass (events was busy): {', '.join(self.partitions_busy)}"
        return text


def ensure_partitions(
    conn: Any, schemas: Schemas, at: datetime | None = None, weeks_ahead: int = 4, lock_timeout: str = "5s"
) -> int:
    """Create the weekly event partitions from the week of ``at`` (default now) ahead; return how many.

    A week whose partition cannot be attached within ``lock_timeout`` (``events_default`` in use by a
    long reader) is left to the next pass, with a warning from the server; so is everything while another
    pass holds the partitions lock (a prune dropping a partition): nothing waits for it.
    """
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {quote_ident(schemas.landing)}.ensure_event_partitions(coalesce(%s, now()), %s, %s)",
            (at, weeks_ahead, lock_timeout),
        )
        return int(cur.fetchone()[0])


def prune(
    conn: Any,
    schemas: Schemas,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    drop_lock_timeout: str = DROP_LOCK_TIMEOUT,
) -> PruneReport:
    """Remove the landed events of normalized runs older than ``older_than``.

    One transaction deletes the rows outside the partitions that go whole and marks the runs pruned;
    then each of those partitions is dropped in a transaction of its own, the only ones holding the
    partitions lock (a receiver starting meanwhile skips creating partitions). A drop locks ``events``
    against the receiver's inserts, so it waits ``drop_lock_timeout`` at most (behind a long
    normalization, say) and is otherwise left to the next pass, which finds it droppable again.
    """
    check_retention(older_than, "--older-than")
    landing = quote_ident(schemas.landing)
    with conn, conn.cursor() as cur:
        # No partitions lock here: this transaction may take long (row-by-row deletes), and a receiver's start-up
        # must not wait for it. Creation only adds weeks from now on, which are never droppable nor prunable.
        cur.execute("SELECT now() - %s", (older_than,))
        cutoff = cur.fetchone()[0]
        for statement in load_statements("landing/prune_plan.sql", schemas):
            cur.execute(statement, {"cutoff": cutoff})
        cur.execute("SELECT sync_run_id, first_received_at, last_received_at FROM _prunable ORDER BY first_received_at")
        runs = cur.fetchall()
        cur.execute(
            "SELECT oid, name, estimated_events FROM _partitions WHERE droppable ORDER BY lower_bound NULLS FIRST"
        )
        droppable = cur.fetchall()
        oids = [oid for oid, _, _ in droppable]
        per_run = load_sql("landing/prune_count_run_events.sql" if dry_run else "landing/prune_run_events.sql", schemas)
        deleted = 0
        for run_id, first, last in runs:
            cur.execute(
                per_run, {"run_id": run_id, "first_received_at": first, "last_received_at": last, "dropped": oids}
            )
            deleted += cur.fetchone()[0] if dry_run else cur.rowcount
        if dry_run:
            cur.execute(f"SELECT count(*) FROM {landing}.event_ids WHERE received_at < now() - %s", (DEDUP_WINDOW,))
            (forgotten,) = cur.fetchone()
            conn.rollback()
            return PruneReport(
                cutoff,
                True,
                len(runs),
                deleted,
                [name for _, name, _ in droppable],
                sum(n for _, _, n in droppable),
                forgotten,
            )
        cur.execute(load_sql("landing/prune_apply.sql", schemas))
        _, forgotten = cur.fetchone()
    dropped, busy, estimate = [], [], 0
    for _, name, events in droppable:
        try:
            with conn, conn.cursor() as cur:
                # Serialized with partition creation (the lock ensure_event_partitions tries) for one drop only.
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('knit_provider.partitions:' || %s))", (landing,))
                cur.execute("SELECT set_config('lock_timeout', %s, true)", (drop_lock_timeout,))
                cur.execute(f"DROP TABLE {landing}.{quote_ident(name)}")
            dropped.append(name)
            estimate += events
        except psycopg2.errors.LockNotAvailable:
            busy.append(name)
    report = PruneReport(cutoff, False, len(runs), deleted, dropped, estimate, forgotten, busy)
    log.info("Landing store %s: %s", schemas.landing, report.describe())
    return report


@dataclass(frozen=True)
class MaintenanceReport:
    """What one maintenance pass did: partitions created, and the prune (``None`` without a retention)."""

    partitions_created: int
    event_ids_forgotten: int
    retention: str | None
    prune: PruneReport | None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "prune": self.prune.as_dict() if self.prune else None}

    def describe(self) -> str:
        text = f"{self.partitions_created} event partitions created ahead; "
        if self.prune is None:
            return text + (
                f"{self.event_ids_forgotten} event ids past the dedup window forgotten; no retention set "
                f"(${RETENTION_ENV} or the landing connection's {RETENTION_EXTRA!r} extra): "
                "every landed event is kept"
            )
        return text + f"retention {self.retention}: " + self.prune.describe()


def maintain(conn: Any, schemas: Schemas, retention: timedelta | None, *, dry_run: bool = False) -> MaintenanceReport:
    """Create partitions ahead, forget ids past the dedup window, and prune when ``retention`` is set."""
    created = 0 if dry_run else ensure_partitions(conn, schemas)
    if retention is None:
        forgotten = 0
        if not dry_run:
            with conn, conn.cursor() as cur:
                cur.execute(f"SELECT {quote_ident(schemas.landing)}.forget_event_ids()")
                forgotten = int(cur.fetchone()[0])
        report = MaintenanceReport(created, forgotten, None, None)
    else:
        pruned = prune(conn, schemas, retention, dry_run=dry_run)
        report = MaintenanceReport(created, pruned.event_ids_forgotten, age_text(retention), pruned)
    log.info("Landing store %s maintenance: %s", schemas.landing, report.describe())
    return report
