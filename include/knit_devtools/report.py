"""What landed and what was normalized, as the demo prints it: a handful of read-only queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from knit_provider.settings import Schemas, quote_ident


@dataclass
class PipelineReport:
    """Counts from the landing store and the normalized tables of one integration."""

    integration_id: str
    events_by_type: list[tuple[str, int]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    applications_by_status: list[tuple[str, int]] = field(default_factory=list)
    applications_by_stage: list[tuple[str, int]] = field(default_factory=list)
    table_rows: list[tuple[str, int]] = field(default_factory=list)
    dead_letters: int = 0
    deleted: int = 0


def _rows(cur: Any, sql: str, args: Sequence[Any]) -> list[Any]:
    cur.execute(sql, args)
    return list(cur.fetchall())


def collect(conn: Any, integration_id: str, schemas: Schemas | None = None) -> PipelineReport:
    """Read the report's figures over a psycopg2 connection (read-only)."""
    schemas = schemas or Schemas.from_env()
    landing, target = quote_ident(schemas.landing), quote_ident(schemas.target)
    report = PipelineReport(integration_id)
    with conn.cursor() as cur:
        report.events_by_type = _rows(
            cur,
            f"SELECT event_type, count(*) FROM {landing}.events WHERE integration_id = %s GROUP BY 1 ORDER BY 2 DESC",
            (integration_id,),
        )
        cur.execute(
            f"SELECT sync_run_id, sync_type, record_events, emitted_count, consumed_count, "
            f"round(extract(epoch FROM last_received_at - first_received_at)::numeric, 1), "
            f"normalized_at IS NOT NULL FROM {landing}.sync_runs WHERE integration_id = %s ORDER BY first_seq",
            (integration_id,),
        )
        report.runs = [
            dict(zip(("run", "type", "landed", "emitted", "consumed", "seconds", "normalized"), row, strict=True))
            for row in cur.fetchall()
        ]
        live = f"FROM {target}.ats_applications WHERE integration_id = %s AND NOT is_deleted"
        report.applications_by_status = _rows(
            cur, f"SELECT coalesce(status, '(none)'), count(*) {live} GROUP BY 1 ORDER BY 2 DESC", (integration_id,)
        )
        report.applications_by_stage = _rows(
            cur,
            f"SELECT coalesce(current_stage_name, '(none)'), count(*) {live} GROUP BY 1 ORDER BY 2 DESC",
            (integration_id,),
        )
        for table in (
            "ats_applications",
            "ats_candidates",
            "ats_application_interviews",
            "ats_application_offers",
            "ats_application_attachments",
            "ats_application_stage_history",
        ):
            cur.execute(
                f"SELECT count(*) FROM {target}.{quote_ident(table)} WHERE integration_id = %s", (integration_id,)
            )
            report.table_rows.append((f"{schemas.target}.{table}", int(cur.fetchone()[0])))
        cur.execute(
            f"SELECT count(*) FROM {target}.ats_applications WHERE integration_id = %s AND is_deleted",
            (integration_id,),
        )
        report.deleted = int(cur.fetchone()[0])
        cur.execute(f"SELECT count(*) FROM {landing}.dead_letters")
        report.dead_letters = int(cur.fetchone()[0])
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


def format_report(report: PipelineReport, steps: Sequence[tuple[str, float]] = ()) -> str:
    """The report as plain text tables."""
    lines: list[str] = [f"Integration {report.integration_id}"]
    lines += _table("Events landed (knit_landing.events)", report.events_by_type, ("event type", "events"))
    lines += _table(
        "Runs (knit_landing.sync_runs)",
        [
            (
                r["run"],
                r["type"],
                r["landed"],
                r["emitted"],
                r["consumed"],
                r["seconds"],
                "yes" if r["normalized"] else "no",
            )
            for r in report.runs
        ],
        ("run", "type", "landed", "emitted", "consumed", "delivery s", "normalized"),
    )
    lines += _table("Applications by status (not deleted)", report.applications_by_status, ("status", "applications"))
    lines += _table(
        "Applications by current stage (not deleted)", report.applications_by_stage, ("stage", "applications")
    )
    lines += _table("Normalized tables", report.table_rows, ("table", "rows"))
    lines.append(f"  ({report.deleted} applications are soft-deleted: deleted in the source since they landed)")
    lines.append(f"\nDead letters (signed bodies that could not be used): {report.dead_letters}")
    if steps:
        lines += _table("Steps", [(name, f"{seconds:.1f}") for name, seconds in steps], ("step", "seconds"))
        lines.append(f"  total {sum(seconds for _, seconds in steps):.1f} s")
    return "\n".join(lines)
