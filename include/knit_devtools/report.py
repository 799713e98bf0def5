"""What landed and what was normalized, as the demo prints it: a handful of read-only queries.

Per data type (the registry's enabled ones by default): its runs, the rows of each of its tables
(views are listed, not counted: a view's rows are another table's) and its soft-deleted records.
With both ``ats_applications`` and ``ats_jobs``: the live applications per job title and per
department, read from the view ``ats_applications_with_jobs``, and how many of them join to a job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from knit_provider.data_types import DataTypeSpec, enabled
from knit_provider.settings import ATS_APPLICATIONS, Schemas, quote_ident

ATS_JOBS = "ats_jobs"
TOP = 10  # rows of the per-title and per-department tables


@dataclass
class DataTypeReport:
    """One data type's runs and tables, for one integration."""

    name: str
    title: str
    records: str  # "applications", "jobs"
    runs: list[dict[str, Any]] = field(default_factory=list)
    table_rows: list[tuple[str, int]] = field(default_factory=list)
    views: list[str] = field(default_factory=list)  # in the spec's tables, not counted
    deleted: int = 0


@dataclass
class ApplicationsWithJobs:
    """Live (not deleted) applications by their job, from ``ats_applications_with_jobs``."""

    by_title: list[tuple[str, int]] = field(default_factory=list)
    by_department: list[tuple[str, int]] = field(default_factory=list)
    live: int = 0
    joined: int = 0  # live applications whose job is in ats_jobs (live or closed)

    @property
    def joined_percent(self) -> float:
        return 100.0 * self.joined / self.live if self.live else 100.0


@dataclass
class PipelineReport:
    """Counts from the landing store and the normalized tables of one integration."""

    integration_id: str
    events_by_type: list[tuple[str | None, str, int]] = field(default_factory=list)
    data_types: list[DataTypeReport] = field(default_factory=list)
    applications_by_status: list[tuple[str, int]] = field(default_factory=list)
    applications_by_stage: list[tuple[str, int]] = field(default_factory=list)
    with_jobs: ApplicationsWithJobs | None = None  # only when both types are reported
    dead_letters: int = 0


def _rows(cur: Any, sql: str, args: Sequence[Any]) -> list[Any]:
    cur.execute(sql, args)
    return list(cur.fetchall())


def _count(cur: Any, sql: str, args: Sequence[Any]) -> int:
    cur.execute(sql, args)
    return int(cur.fetchone()[0])


def _views(cur: Any, schemas: Schemas, names: Sequence[str]) -> set[str]:
    """Which of ``names`` are views in the target schema."""
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('v', 'm')",
        (schemas.target, list(names)),
    )
    return {row[0] for row in cur.fetchall()}


def _data_type(cur: Any, spec: DataTypeSpec, integration_id: str, schemas: Schemas) -> DataTypeReport:
    landing, target = quote_ident(schemas.landing), quote_ident(schemas.target)
    found = DataTypeReport(spec.name, spec.title, spec.records)
    # A run landed without a data type is ats_applications (Knit's earlier payloads; registry.get).
    cur.execute(
        f"SELECT sync_run_id, sync_type, record_events, emitted_count, consumed_count, "
        f"round(extract(epoch FROM last_received_at - first_received_at)::numeric, 1), "
        f"normalized_at IS NOT NULL FROM {landing}.sync_runs "
        f"WHERE integration_id = %s AND coalesce(sync_data_type, %s) = %s ORDER BY first_seq",
        (integration_id, ATS_APPLICATIONS, spec.name),
    )
    found.runs = [
        dict(zip(("run", "type", "landed", "emitted", "consumed", "seconds", "normalized"), row, strict=True))
        for row in cur.fetchall()
    ]
    views = _views(cur, schemas, spec.tables)
    found.views = [f"{schemas.target}.{name}" for name in spec.tables if name in views]
    for table in spec.tables:
        if table not in views:
            rows = _count(
                cur, f"SELECT count(*) FROM {target}.{quote_ident(table)} WHERE integration_id = %s", (integration_id,)
            )
            found.table_rows.append((f"{schemas.target}.{table}", rows))
    found.deleted = _count(
        cur,
        f"SELECT count(*) FROM {target}.{quote_ident(spec.record_table)} WHERE integration_id = %s AND is_deleted",
        (integration_id,),
    )
    return found


def _with_jobs(cur: Any, integration_id: str, schemas: Schemas) -> ApplicationsWithJobs:
    live = f"FROM {quote_ident(schemas.target)}.ats_applications_with_jobs WHERE integration_id = %s AND NOT is_deleted"
    per = f"count(*) {live} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP}"
    # job_is_deleted is ats_jobs.is_deleted (NOT NULL there): NULL exactly when no job row joined.
    unsynced = "CASE WHEN job_is_deleted IS NULL THEN '(job not synced)' ELSE coalesce({}, '{}') END"
    found = ApplicationsWithJobs()
    title = unsynced.format("job_title", "(no title)")
    found.by_title = _rows(cur, f"SELECT {title}, {per}", (integration_id,))
    department = unsynced.format("job_department", "(no department)")
    found.by_department = _rows(cur, f"SELECT {department}, {per}", (integration_id,))
    cur.execute(f"SELECT count(*), count(job_is_deleted) {live}", (integration_id,))
    found.live, found.joined = (int(n) for n in cur.fetchone())
    return found


def collect(
    conn: Any,
    integration_id: str,
    schemas: Schemas | None = None,
    data_types: Sequence[DataTypeSpec] | None = None,
) -> PipelineReport:
    """Read the report's figures over a psycopg2 connection (read-only); ``data_types``: the enabled ones."""
    schemas = schemas or Schemas.from_env()
    specs = enabled() if data_types is None else data_types
    landing, target = quote_ident(schemas.landing), quote_ident(schemas.target)
    report = PipelineReport(integration_id)
    with conn.cursor() as cur:
        report.events_by_type = _rows(
            cur,
            f"SELECT sync_data_type, event_type, count(*) FROM {landing}.events WHERE integration_id = %s "
            "GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 3 DESC",
            (integration_id,),
        )
        report.data_types = [_data_type(cur, spec, integration_id, schemas) for spec in specs]
        names = {spec.name for spec in specs}
        if ATS_APPLICATIONS in names:
            live = f"FROM {target}.ats_applications WHERE integration_id = %s AND NOT is_deleted"
            report.applications_by_status = _rows(
                cur, f"SELECT coalesce(status, '(none)'), count(*) {live} GROUP BY 1 ORDER BY 2 DESC", (integration_id,)
            )
            report.applications_by_stage = _rows(
                cur,
                f"SELECT coalesce(current_stage_name, '(none)'), count(*) {live} GROUP BY 1 ORDER BY 2 DESC",
                (integration_id,),
            )
            if ATS_JOBS in names:
                report.with_jobs = _with_jobs(cur, integration_id, schemas)
        report.dead_letters = _count(cur, f"SELECT count(*) FROM {landing}.dead_letters", ())
    return report


def _table(title: str, rows: Sequence[tuple[Any, ...]], headers: Sequence[str]) -> list[str]:
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["", title]
    for n, row in enumerate(cells):
        lines.append(
            "  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def _format_data_type(found: DataTypeReport) -> list[str]:
    runs = [
        (
            r["run"],
            r["type"],
            r["landed"],
            r["emitted"],
            r["consumed"],
            r["seconds"],
            "yes" if r["normalized"] else "no",
        )
        for r in found.runs
    ]
    lines = _table(
        f"{found.title} ({found.name}): runs (knit_landing.sync_runs)",
        runs,
        ("run", "type", "landed", "emitted", "consumed", "delivery s", "normalized"),
    )
    lines += _table(f"{found.title}: normalized tables", found.table_rows, ("table", "rows"))
    if found.views:
        lines.append(f"  (views, not counted: {', '.join(found.views)})")
    lines.append(f"  ({found.deleted} {found.records} are soft-deleted: deleted in the source since they landed)")
    return lines


def _format_with_jobs(found: ApplicationsWithJobs) -> list[str]:
    source = "(not deleted, from knit.ats_applications_with_jobs)"
    lines = _table(f"Applications per job title, top {TOP} {source}", found.by_title, ("job title", "applications"))
    lines += _table(
        f"Applications per department (the job's first), top {TOP} {source}",
        found.by_department,
        ("department", "applications"),
    )
    lines.append(
        f"\nApplications joined to their job: {found.joined} of {found.live} not deleted ({found.joined_percent:.1f}%)"
    )
    if found.joined < found.live:
        lines.append("  (the others name a job not in knit.ats_jobs: their job columns in the view are NULL)")
    return lines


def format_report(report: PipelineReport, steps: Sequence[tuple[str, float]] = ()) -> str:
    """The report as plain text tables."""
    lines: list[str] = [f"Integration {report.integration_id}"]
    lines += _table("Events landed (knit_landing.events)", report.events_by_type, ("data type", "event type", "events"))
    for found in report.data_types:
        lines += _format_data_type(found)
    if report.applications_by_status or report.applications_by_stage:
        lines += _table(
            "Applications by status (not deleted)", report.applications_by_status, ("status", "applications")
        )
        lines += _table(
            "Applications by current stage (not deleted)", report.applications_by_stage, ("stage", "applications")
        )
    if report.with_jobs is not None:
        lines += _format_with_jobs(report.with_jobs)
    lines.append(f"\nDead letters (signed bodies that could not be used): {report.dead_letters}")
    if steps:
        lines += _table("Steps", [(name, f"{seconds:.1f}") for name, seconds in steps], ("step", "seconds"))
        lines.append(f"  total {sum(seconds for _, seconds in steps):.1f} s")
    return "\n".join(lines)
