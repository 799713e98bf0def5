"""Normalize one run in one transaction: the SQL steps of ``sql/normalize/``, in order, under a lock.

A run's events are read once into a temporary table; the applications, child lists, candidates,
versions and stage history are then written by set-based statements, and an ``initial_sync`` run
that qualifies (``normalize/snapshot.py``) deletes the applications it did not contain. Every write
compares versions, so runs may be normalized in any order, and again, with the same tables as the
result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from knit_provider.normalize.runs import LandedRun, check_normalizable, get_run
from knit_provider.normalize.snapshot import (
    APPLIED,
    SKIPPED,
    contradicted_snapshots,
    snapshot_problems,
)
from knit_provider.settings import DEDUP_WINDOW, INITIAL_SYNC, Schemas
from knit_provider.sql import load_sql, load_statements

log = logging.getLogger(__name__)

# Sorting and hashing a million-application initial run in memory instead of in temp files.
DEFAULT_WORK_MEM = "256MB"


def _execute(cur: Any, name: str, schemas: Schemas, params: dict[str, Any]) -> list[int]:
    """Run one step statement by statement (timed in the debug log); return each statement's row count."""
    counts = []
    for statement in load_statements(name, schemas):
        started = time.perf_counter()
        cur.execute(statement, params)
        counts.append(cur.rowcount)
        log.debug(
            "%s: %d rows in %.3fs: %s",
            name,
            cur.rowcount,
            time.perf_counter() - started,
            statement.strip().splitlines()[-1][:60],
        )
    return counts


@dataclass(frozen=True)
class NormalizeResult:
    """What normalizing one run did; ``as_dict`` is what the operator returns as XCom."""

    sync_run_id: str
    integration_id: str | None
    complete: bool
    record_events: int
    applications: int
    applications_changed: int
    candidates_changed: int
    type_error_events: int
    events_without_application_id: int
    seconds: float
    skipped: str | None = None
    # initial_sync runs only: "applied" or "skipped" (why in snapshot_note), and the applications
    # deleted because the run did not contain them.
    snapshot: str | None = None
    snapshot_note: str | None = None
    snapshot_deleted: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.skipped:
            return f"run {self.sync_run_id}: skipped ({self.skipped})"
        text = (
            f"run {self.sync_run_id}: {self.record_events} record events, {self.applications} applications "
            f"({self.applications_changed} changed), {self.candidates_changed} candidates changed, "
            f"{self.type_error_events} events with wrong-typed fields, in {self.seconds:.2f}s"
        )
        if self.events_without_application_id:
            text += f"; {self.events_without_application_id} events without an application id were ignored"
        if self.snapshot == APPLIED:
            text += f"; snapshot: {self.snapshot_deleted} applications it did not contain are deleted"
        elif self.snapshot == SKIPPED:
            text += f"; snapshot step skipped: {self.snapshot_note}"
        if not self.complete:
            text += "; run incomplete (forced), left pending"
        return text


def integration_lock_key(schemas: Schemas, integration_id: str) -> str:
    """Advisory lock of one integration's rows in one target schema (hashed by ``hashtext``)."""
    return f"knit_provider.normalize:{schemas.target}:{integration_id}"


def normalize_run(
    conn: Any,
    run_id: str,
    schemas: Schemas,
    *,
    force: bool = False,
    only_if_pending: bool = False,
    work_mem: str = DEFAULT_WORK_MEM,
) -> NormalizeResult:
    """Normalize one run in one transaction over a psycopg2 connection (the target schema must exist).

    :param force: normalize a run whose allConsumed has not landed (it stays pending in the landing store).
    :param only_if_pending: skip the run if another process normalized it meanwhile (``--pending``).
    """
    started = time.perf_counter()
    with conn, conn.cursor() as cur:
        run = get_run(cur, schemas, run_id)
        check_normalizable(run, force=force)
        if run.events_pruned_at is not None:
            # What the run wrote stays in the tables; normalizing nothing would only undo it (a snapshot
            # with no events deletes every application), so a backfill passes over it.
            return _skipped(
                run_id,
                run.integration_id,
                f"its landed events were removed by retention on {run.events_pruned_at}",
                started,
            )
        cur.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'")
        cur.execute("SELECT set_config('work_mem', %s, true)", (work_mem,))
        # A delta touches a few rows of big tables: index lookups must look as cheap as they are on
        # SSDs, or the planner scans whole tables and the delta's cost grows with the tables.
        cur.execute("SET LOCAL random_page_cost = 1.1")
        # Compiling these expression-heavy statements costs more than it saves (measured: 30 percent slower).
        cur.execute("SET LOCAL jit = off")
        params: dict[str, Any] = {
            "run_id": run.sync_run_id,
            "integration_id": run.integration_id,
            "first_seq": run.first_seq,
            "started_at": run.started_at,
            # The run's span of arrival: its events are read from the partitions of that span only.
            "first_received_at": run.first_received_at,
            "last_received_at": run.last_received_at,
            # An event id is remembered for the dedup window: only a run spanning more than that can hold a
            # redelivery landed twice (see run_events.sql).
            "may_hold_late_duplicates": run.last_received_at - run.first_received_at >= DEDUP_WINDOW,
        }
        _execute(cur, "normalize/run_events.sql", schemas, params)

        # Lock every integration the run writes, in one order, before the first write: two runs of
        # one integration never interleave, runs of different integrations proceed in parallel.
        cur.execute("SELECT DISTINCT integration_id FROM _run_events ORDER BY 1")
        integrations = sorted({row[0] for row in cur.fetchall()} | {run.integration_id or ""})
        for integration_id in integrations:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (integration_lock_key(schemas, integration_id),))
        if only_if_pending:
            run = get_run(cur, schemas, run_id)
            if run.normalized_at is not None:
                return _skipped(run_id, run.integration_id, "already normalized by another process", started)

        cur.execute(load_sql("normalize/run_counts.sql", schemas))
        record_events, applications, type_errors, unkeyed, models = cur.fetchone()
        # A later snapshot lacking a model this run carries no longer qualifies: withdraw it before
        # this run's rows look for the snapshots that delete them.
        for later in contradicted_snapshots(cur, schemas, run, models):
            note = later.note(run.sync_run_id)
            withdrawn = _withdraw_snapshot(cur, schemas, later.sync_run_id, later.first_seq, run.integration_id, note)
            log.warning(
                "Snapshot of initial sync %s withdrawn (%d applications it had deleted are decided by "
                "their own events again): %s",
                later.sync_run_id,
                withdrawn,
                note,
            )
        _execute(cur, "normalize/applications.sql", schemas, params)
        cur.execute("SELECT count(*) FROM _changed")
        (changed,) = cur.fetchone()
        _execute(cur, "normalize/children.sql", schemas, params)
        # The temporary table, the update, the insert: the last two are the candidates written.
        candidates_changed = sum(_execute(cur, "normalize/candidates.sql", schemas, params)[1:])
        _execute(cur, "normalize/history.sql", schemas, params)
        snapshot: dict[str, Any] = {"snapshot": None, "snapshot_note": None, "snapshot_deleted": None}
        if run.sync_type == INITIAL_SYNC:
            snapshot = _snapshot_step(cur, schemas, run, landed=record_events, unkeyed=unkeyed, models=models)
        result = NormalizeResult(
            sync_run_id=run.sync_run_id,
            integration_id=run.integration_id,
            complete=run.complete,
            record_events=record_events,
            applications=applications,
            applications_changed=changed,
            candidates_changed=candidates_changed,
            type_error_events=type_errors,
            events_without_application_id=unkeyed,
            seconds=0.0,
            **snapshot,
        )
        cur.execute(
            load_sql("normalize/finish.sql", schemas),
            {
                **params,
                **result.as_dict(),
                "models": models,
                "snapshot_at": _snapshot_at(run) if result.snapshot == APPLIED else None,
            },
        )
    result = NormalizeResult(**{**result.as_dict(), "seconds": round(time.perf_counter() - started, 3)})
    log.info("Normalized %s", result.describe())
    return result


def _snapshot_at(run: LandedRun) -> Any:
    """When applications absent from a snapshot are deleted: Knit's start of the run, else its completion."""
    return run.started_at or run.complete_at


def _snapshot_step(
    cur: Any, schemas: Schemas, run: LandedRun, *, landed: int, unkeyed: int, models: list[str]
) -> dict[str, Any]:
    """Apply this initial sync as a snapshot if it qualifies; otherwise withdraw it and log why."""
    problems = snapshot_problems(cur, schemas, run, landed=landed, unkeyed=unkeyed, models=models)
    if problems:
        note = "; ".join(problems)
        # Normalized before, it may have applied: its deletions must not outlive its qualification.
        withdrawn = _withdraw_snapshot(cur, schemas, run.sync_run_id, run.first_seq, run.integration_id, note)
        log.warning(
            "Initial sync %s of integration %r: snapshot step skipped, so applications it did not "
            "contain are not deleted%s: %s",
            run.sync_run_id,
            run.integration_id,
            f" ({withdrawn} it had deleted before are decided by their own events again)" if withdrawn else "",
            note,
        )
        return {"snapshot": SKIPPED, "snapshot_note": note, "snapshot_deleted": None}
    _execute(
        cur,
        "normalize/snapshot_apply.sql",
        schemas,
        {
            "snapshot_run_id": run.sync_run_id,
            "snapshot_first_seq": run.first_seq,
            "snapshot_at": _snapshot_at(run),
            "integration": run.integration_id or "",
        },
    )
    (deleted,) = cur.fetchone()  # the count, the file's last statement
    return {"snapshot": APPLIED, "snapshot_note": None, "snapshot_deleted": int(deleted)}


def _withdraw_snapshot(
    cur: Any, schemas: Schemas, snapshot_run_id: str, first_seq: int, integration_id: str | None, note: str
) -> int:
    """Undo a snapshot's deletions and mark it skipped with ``note``; return how many applications it had deleted."""
    counts = _execute(
        cur,
        "normalize/snapshot_withdraw.sql",
        schemas,
        {
            "snapshot_run_id": snapshot_run_id,
            "snapshot_first_seq": first_seq,
            "integration": integration_id or "",
            "note": note,
        },
    )
    return counts[0]


def _skipped(run_id: str, integration_id: str | None, reason: str, started: float) -> NormalizeResult:
    return NormalizeResult(
        sync_run_id=run_id,
        integration_id=integration_id,
        complete=True,
        record_events=0,
        applications=0,
        applications_changed=0,
        candidates_changed=0,
        type_error_events=0,
        events_without_application_id=0,
        seconds=round(time.perf_counter() - started, 3),
        skipped=reason,
    )


def normalize_runs(
    conn: Any,
    run_ids: Iterable[str],
    schemas: Schemas,
    *,
    force: bool = False,
    only_if_pending: bool = False,
    work_mem: str = DEFAULT_WORK_MEM,
) -> list[NormalizeResult]:
    """Normalize runs one after another, each in its own transaction, creating the schema first."""
    from knit_provider.normalize.schema import ensure_schema

    ensure_schema(conn, schemas)
    return [
        normalize_run(conn, run_id, schemas, force=force, only_if_pending=only_if_pending, work_mem=work_mem)
        for run_id in run_ids
    ]
