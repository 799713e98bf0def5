"""What a publish tells the DAGs scheduled on a data type's asset: the asset event's ``extra``.

Every task that updates ``knit://<type>`` (the scheduled DAG's ``publish``, the on-delivery DAG's
normalize task, onboarding's ``publish``) attaches :func:`change_extra` of the normalizations it made. The
keys are stable (``docs/chaining.md``); a downstream task reads them from ``triggering_asset_events``:

* ``data_type``: Knit's data type (``ats_applications``);
* ``integrations``, ``sync_runs``: the integrations and runs normalized (a run another task normalized
  first is not listed), sorted;
* ``tables``: per table, the rows those normalizations ``inserted``, ``updated`` (a soft delete included),
  ``soft_deleted`` (of those, the rows now ``is_deleted``) and ``deleted`` (keys gone:
  ``knit_deleted_rows``);
* ``change_watermark``: the change feed's watermark after them (``sql/normalize/change_feed.sql``):
  every row with ``knit_changed_seq`` at or below it is final; ``None`` before the first normalization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from knit_provider.settings import Schemas, quote_ident

#: The keys of every extra, in this order.
EXTRA_KEYS = ("data_type", "integrations", "sync_runs", "tables", "change_watermark")
#: The counts per table.
TABLE_COUNTS = ("inserted", "updated", "soft_deleted", "deleted")


def change_watermark(conn: Any, schemas: Schemas) -> int | None:
    """The change feed's watermark now, in a statement of its own (``None`` if no schema has the feed yet)."""
    target = quote_ident(schemas.target)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regprocedure(%s)", (f"{target}.knit_change_watermark()",))
        if cur.fetchone()[0] is None:
            return None
        cur.execute(f"SELECT {target}.knit_change_watermark()")
        (watermark,) = cur.fetchone()
    return None if watermark is None else int(watermark)


def change_extra(
    data_type: str, summaries: Iterable[Mapping[str, Any] | None], watermark: int | None
) -> dict[str, Any]:
    """The extra of one asset event: what the normalize tasks' summaries (their XComs) of ``data_type`` changed.

    Summaries of other types, of tasks that were skipped (``None``) and runs passed over are left out.
    """
    runs = [
        run
        for summary in summaries
        if summary and summary.get("data_type") == data_type
        for run in summary.get("runs", ())
        if not run.get("skipped")
    ]
    tables: dict[str, dict[str, int]] = {}
    for run in runs:
        for table, counts in (run.get("tables") or {}).items():
            total = tables.setdefault(table, dict.fromkeys(TABLE_COUNTS, 0))
            for key in TABLE_COUNTS:
                total[key] += int(counts.get(key, 0))
    return {
        "data_type": data_type,
        "integrations": sorted({run["integration_id"] for run in runs if run.get("integration_id")}),
        "sync_runs": sorted({run["sync_run_id"] for run in runs}),
        "tables": tables,
        "change_watermark": watermark,
    }


def publish_changes(
    context: Mapping[str, Any],
    outlets: Iterable[Any],
    summaries: Iterable[Mapping[str, Any] | None],
    *,
    landing_conn_id: str,
    schemas: Schemas | None = None,
    conn: Any = None,
) -> dict[str, dict[str, Any]]:
    """Attach :func:`change_extra` to the event of each data type's asset among ``outlets``; return them by type.

    ``conn`` (open, psycopg2) is used for the watermark when given; otherwise one is opened from ``landing_conn_id``.
    """
    from knit_provider.data_types import known

    # By name: Airflow rewrites an asset's URI (knit://ats_applications/), never its name.
    by_name = {spec.asset_name: spec for spec in known()}
    assets = [outlet for outlet in outlets if getattr(outlet, "name", None) in by_name]
    if not assets:
        return {}
    schemas = schemas or Schemas.from_env()
    if conn is None:
        from knit_provider.hooks.landing import KnitLandingHook

        opened = KnitLandingHook(landing_conn_id, application_name="knit-publish").get_conn()
        try:
            watermark = change_watermark(opened, schemas)
        finally:
            opened.close()
    else:
        watermark = change_watermark(conn, schemas)
    summaries = list(summaries)
    extras = {}
    for asset in assets:
        data_type = by_name[asset.name].name
        extra = change_extra(data_type, summaries, watermark)
        context["outlet_events"][asset].extra = extra
        extras[data_type] = extra
    return extras
