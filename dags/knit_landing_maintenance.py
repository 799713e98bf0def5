"""
### Knit landing store maintenance: partitions ahead, retention

Keeps the landing store's cost flat as its history grows. Daily, **paused by default** (unpause it
once a retention is chosen, or to keep the partitions ahead when receivers run for weeks without a
restart; the receiver also creates them at every start-up):

- creates the weekly partitions of `knit_landing.events` four weeks ahead;
- forgets the event ids older than the dedup window (7 days: Knit retries for four);
- with a **retention** set (`KNIT_LANDING_RETENTION`, else the `retention` extra of the landing
  connection, e.g. `30d`; at least `7d`), removes the landed events of runs that are normalized and
  whose last event landed longer ago: whole partitions when every run in them qualifies, else the
  runs' rows. Runs not yet normalized, and anything inside the dedup window, are never touched;
  `sync_runs` and the normalized tables are kept. Without a retention, every event is kept.

The trade-off: a backfill can only normalize again what is kept. A pruned run is passed over by
normalization (its rows stay as they were written).

**Params**: `dry_run` (report what would be removed, remove nothing).
**Connection**: `knit_landing_default` (the Postgres database holding `knit_landing`), or the one
named by `KNIT_LANDING_MAINTENANCE_CONN_ID`: its role must own `knit_landing` (it creates and drops
partitions).
The task returns its report (XCom) and logs it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from knit_provider.run_plans import DEFAULT_ARGS
from knit_provider.settings import DEFAULT_LANDING_CONN_ID

with DAG(
    dag_id="knit_landing_maintenance",
    description="Create knit_landing.events partitions ahead; remove normalized runs' events past the retention.",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    dagrun_timeout=timedelta(hours=2),
    default_args=DEFAULT_ARGS,
    params={
        "dry_run": Param(False, type="boolean", description="Report what would be removed; remove nothing."),
    },
    tags=["knit", "maintenance"],
    doc_md=__doc__,
) as dag:

    @task(retries=1)
    def maintain(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Partitions ahead, ids past the dedup window forgotten, events past the retention removed."""
        import os

        from knit_provider.hooks.landing import KnitLandingHook
        from knit_provider.landing.retention import configured_retention, maintain
        from knit_provider.lineage import report_maintenance_lineage
        from knit_provider.settings import Schemas

        conn_id = os.environ.get("KNIT_LANDING_MAINTENANCE_CONN_ID") or DEFAULT_LANDING_CONN_ID
        # For OpenLineage, when its provider is installed and configured (see knit_provider.lineage).
        report_maintenance_lineage(conn_id, Schemas.from_env(), dry_run=bool((params or {}).get("dry_run")))
        # A wrong retention raises KnitInputError, an AirflowFailException: retrying will not fix it.
        retention = configured_retention(conn_id)
        conn = KnitLandingHook(conn_id, application_name="knit-landing-maintenance").get_conn()
        try:
            report = maintain(conn, Schemas.from_env(), retention, dry_run=bool((params or {}).get("dry_run")))
        finally:
            conn.close()
        return report.as_dict()

    maintain()
