"""Normalize one run in one transaction: its data type's SQL steps, in order, under a lock.

The run's data type (``knit_provider/data_types/``) says which SQL reads its events and writes its
tables: the events are read once into temporary tables, the tables are written by set-based
statements, and an ``initial_sync`` run that qualifies (``normalize/snapshot.py``) deletes the
records it did not contain. Every write compares versions, so runs may be normalized in any order,
and again, with the same tables as the result. The ledger (``normalized_runs``) is shared by all types.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from psycopg2.extras import Json

from knit_provider.data_types import DataTypeSpec, get
from knit_provider.normalize.runs import LandedRun, check_normalizable, get_run
from knit_provider.normalize.snapshot import (
    APPLIED,
    SKIPPED,
    contradicted_snapshots,
    snapshot_problems,
)
from knit_provider.settings import DEDUP_WINDOW, INITIAL_SYNC, Schemas, quote_ident
from knit_provider.sql import load_sql, load_statements, split_statements

log = logging.getLogger(__name__)

# Sorting and hashing a million-application initial run in memory instead of in temp files.
DEFAULT_WORK_MEM = "256MB"


def _execute(
    cur: Any, name: str, schemas: Schemas, params: dict[str, Any], spec: DataTypeSpec, *, shared: bool = False
) -> list[int]:
    """Run one step statement by statement (timed in the debug log); return each statement's row count.

    ``name`` is one of the data type's SQL files, or with ``shared`` one of ``sql/normalize/`` (filled with
    the type's record table).
    """
    statements = load_statements(name, schemas, spec) if shared else split_statements(spec.load_sql(name, schemas))
    counts = []
    for statement in statements:
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


# The names of releases before data types: the result's keys, and those of them the ledger has as columns.
_EARLIER_LEDGER_COLUMNS = ("applications", "applications_changed", "candidates_changed")
_EARLIER_KEYS = (*_EARLIER_LEDGER_COLUMNS, "events_without_application_id")


@dataclass(frozen=True)
class NormalizeResult:
    """What normalizing one run did; ``as_dict`` is what the operator returns as XCom."""

    sync_run_id: str
    integration_id: str | None
    complete: bool
    record_events: int
    records: int  # distinct records (applications, jobs, ...) the run's events named
    records_changed: int  # of those, the ones whose row changed
    type_error_events: int
    unkeyed_events: int  # record events naming no record: ignored
    seconds: float
    data_type: str = "ats_applications"
    record: str = "record"  # the data type's word for one record, for messages
    # Rows changed in the data type's other tables that its steps count, by table (ats_applications: ats_candidates).
    changes: dict[str, int] = field(default_factory=dict)
    # The change feed (sql/normalize/change_feed.sql): the value the rows this normalization changed carry in
    # knit_changed_seq, and what it did per table: {table: {inserted, updated, soft_deleted, deleted}}.
    changed_seq: int | None = None
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: str | None = None
    # initial_sync runs only: "applied" or "skipped" (why in snapshot_note), and the records
    # deleted because the run did not contain them.
    snapshot: str | None = None
    snapshot_note: str | None = None
    snapshot_deleted: int | None = None

    # The names of releases before data types (ats_applications runs), for code and DAGs that read them.
    @property
    def applications(self) -> int:
        return self.records

    @property
    def applications_changed(self) -> int:
        return self.records_changed

    @property
    def candidates_changed(self) -> int:
        return self.changes.get("ats_candidates", 0)

    @property
    def events_without_application_id(self) -> int:
        return self.unkeyed_events

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        if get(self.data_type).earlier_names:
            found |= {name: getattr(self, name) for name in _EARLIER_KEYS}
        return found

    def describe(self) -> str:
        plural = f"{self.record}s"
        if self.skipped:
            return f"run {self.sync_run_id}: skipped ({self.skipped})"
        others = "".join(f", {count} rows of {table} changed" for table, count in self.changes.items())
        text = (
            f"run {self.sync_run_id}: {self.record_events} record events, {self.records} {plural} "
            f"({self.records_changed} changed){others}, "
            f"{self.type_error_events} events with wrong-typed fields, in {self.seconds:.2f}s"
        )
        if self.unkeyed_events:
            text += f"; {self.unkeyed_events} events without a {self.record} id were ignored"
        if self.snapshot == APPLIED:
            text += f"; snapshot: {self.snapshot_deleted} {plural} it did not contain are deleted"
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
    target = quote_ident(schemas.target)
    with conn, conn.cursor() as cur:
        run = get_run(cur, schemas, run_id)
        check_normalizable(run, force=force)
        spec = get(run.sync_data_type)
        if run.events_pruned_at is not None:
            # What the run wrote stays in the tables; normalizing nothing would only undo it (a snapshot
            # with no events deletes every record), so a backfill passes over it.
            return _skipped(
                run_id,
                run.integration_id,
                spec,
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
            "data_type": spec.name,
            "first_seq": run.first_seq,
            "started_at": run.started_at,
            # The run's span of arrival: its events are read from the partitions of that span only.
            "first_received_at": run.first_received_at,
            "last_received_at": run.last_received_at,
            # An event id is remembered for the dedup window: only a run spanning more than that can hold a
            # redelivery landed twice (see run_events.sql).
            "may_hold_late_duplicates": run.last_received_at - run.first_received_at >= DEDUP_WINDOW,
        }
        _execute(cur, "run_events.sql", schemas, params, spec)

        # Lock every integration the run writes, in one order, before the first write: two runs of
        # one integration never interleave, runs of different integrations proceed in parallel.
        cur.execute("SELECT DISTINCT integration_id FROM _run_events ORDER BY 1")
        integrations = sorted({row[0] for row in cur.fetchall()} | {run.integration_id or ""})
        for integration_id in integrations:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (integration_lock_key(schemas, integration_id),))
        if only_if_pending:
            run = get_run(cur, schemas, run_id)
            if run.normalized_at is not None:
                return _skipped(run_id, run.integration_id, spec, "already normalized by another process", started)
        # After the locks: the change's value, which every row written below carries (the columns' defaults).
        cur.execute(f"SELECT {target}.knit_begin_change()")
        (changed_seq,) = cur.fetchone()

        cur.execute(spec.load_sql("run_counts.sql", schemas))
        record_events, records, type_errors, unkeyed, models = cur.fetchone()
        # A later snapshot lacking a model this run carries no longer qualifies: withdraw it before
        # this run's rows look for the snapshots that delete them.
        for later in contradicted_snapshots(cur, schemas, spec, run, models):
            note = later.note(run.sync_run_id)
            withdrawn = _withdraw_snapshot(
                cur, schemas, spec, later.sync_run_id, later.first_seq, run.integration_id, note
            )
            log.warning(
                "Snapshot of initial sync %s withdrawn (%d %s it had deleted are decided by their own events "
                "again): %s",
                later.sync_run_id,
                withdrawn,
                spec.records,
                note,
            )
        _execute(cur, "normalize/later_snapshot.sql", schemas, params, spec, shared=True)
        counts: dict[str, int] = {}
        for step in spec.steps:
            rowcounts = _execute(cur, step.file, schemas, params, spec)
            if step.counts is not None:
                counts |= step.counts(cur, rowcounts)
        snapshot: dict[str, Any] = {"snapshot": None, "snapshot_note": None, "snapshot_deleted": None}
        if run.sync_type == INITIAL_SYNC:
            snapshot = _snapshot_step(cur, schemas, spec, run, landed=record_events, unkeyed=unkeyed, models=models)
        # Rows written back unchanged keep their marks, then the counts (two statements: the second sees the first).
        cur.execute(f"SELECT {target}.knit_finish_change()")
        cur.execute(f"SELECT {target}.knit_change_counts(%s, %s)", (changed_seq, list(spec.tables)))
        (tables,) = cur.fetchone()
        result = NormalizeResult(
            sync_run_id=run.sync_run_id,
            integration_id=run.integration_id,
            complete=run.complete,
            record_events=record_events,
            records=records,
            records_changed=counts.pop("records_changed", 0),
            type_error_events=type_errors,
            unkeyed_events=unkeyed,
            seconds=0.0,
            data_type=spec.name,
            record=spec.record,
            changes=counts,
            changed_seq=changed_seq,
            tables=tables,
            **snapshot,
        )
        # The ledger's application columns: NULL for the other types.
        legacy = {key: getattr(result, key) if spec.earlier_names else None for key in _EARLIER_LEDGER_COLUMNS}
        cur.execute(
            load_sql("normalize/finish.sql", schemas),
            {
                **params,
                **asdict(result),
                **legacy,
                "changes": Json(result.changes),
                "table_changes": Json(result.tables),
                "models": models,
                "snapshot_at": _snapshot_at(run) if result.snapshot == APPLIED else None,
            },
        )
    result = replace(result, seconds=round(time.perf_counter() - started, 3))
    log.info("Normalized %s", result.describe())
    return result


def _snapshot_at(run: LandedRun) -> Any:
    """When records absent from a snapshot are deleted: Knit's start of the run, else its completion."""
    return run.started_at or run.complete_at


def _snapshot_step(
    cur: Any, schemas: Schemas, spec: DataTypeSpec, run: LandedRun, *, landed: int, unkeyed: int, models: list[str]
) -> dict[str, Any]:
    """Apply this initial sync as a snapshot if it qualifies; otherwise withdraw it and log why."""
    problems = snapshot_problems(cur, schemas, spec, run, landed=landed, unkeyed=unkeyed, models=models)
    if problems:
        note = "; ".join(problems)
        # Normalized before, it may have applied: its deletions must not outlive its qualification.
        withdrawn = _withdraw_snapshot(cur, schemas, spec, run.sync_run_id, run.first_seq, run.integration_id, note)
        log.warning(
            "Initial sync %s of integration %r: snapshot step skipped, so %s it did not contain are not deleted%s: %s",
            run.sync_run_id,
            run.integration_id,
            spec.records,
            f" ({withdrawn} it had deleted before are decided by their own events again)" if withdrawn else "",
            note,
        )
        return {"snapshot": SKIPPED, "snapshot_note": note, "snapshot_deleted": None}
    _execute(
        cur,
        "normalize/snapshot_apply.sql",
        schemas,
        {
            "data_type": spec.name,
            "snapshot_run_id": run.sync_run_id,
            "snapshot_first_seq": run.first_seq,
            "snapshot_at": _snapshot_at(run),
            "integration": run.integration_id or "",
        },
        spec,
        shared=True,
    )
    (deleted,) = cur.fetchone()  # the count, the file's last statement
    return {"snapshot": APPLIED, "snapshot_note": None, "snapshot_deleted": int(deleted)}


def _withdraw_snapshot(
    cur: Any,
    schemas: Schemas,
    spec: DataTypeSpec,
    snapshot_run_id: str,
    first_seq: int,
    integration_id: str | None,
    note: str,
) -> int:
    """Undo a snapshot's deletions and mark it skipped with ``note``; return how many records it had deleted."""
    counts = _execute(
        cur,
        "normalize/snapshot_withdraw.sql",
        schemas,
        {
            "data_type": spec.name,
            "snapshot_run_id": snapshot_run_id,
            "snapshot_first_seq": first_seq,
            "integration": integration_id or "",
            "note": note,
        },
        spec,
        shared=True,
    )
    return counts[0]


def _skipped(
    run_id: str, integration_id: str | None, spec: DataTypeSpec, reason: str, started: float
) -> NormalizeResult:
    return NormalizeResult(
        sync_run_id=run_id,
        integration_id=integration_id,
        complete=True,
        record_events=0,
        records=0,
        records_changed=0,
        type_error_events=0,
        unkeyed_events=0,
        seconds=round(time.perf_counter() - started, 3),
        data_type=spec.name,
        record=spec.record,
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
