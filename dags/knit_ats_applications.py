"""
### Knit ATS applications: sync, wait, normalize, reconcile

Keeps the tables of schema `knit` up to date with each integration's **ATS applications**, in one of
two ways (param `scheduling`, default `$KNIT_SCHEDULING`, else `airflow`; README, "Running beside
Knit's scheduler"):

- **`airflow`: Airflow schedules.** One mapped task group per integration (`sync`): `start_sync`
  (Knit's `sync.start`, with `honorScheduler: true` so Knit's own schedule stays as the customer set
  it) → `wait_for_all_consumed` (deferrable: the wait costs no worker slot) → `normalize` →
  `reconcile`. The first run of an integration is an `initial_sync`; later ones are deltas.
- **`knit`: Knit schedules, Airflow normalizes.** No `sync.start`: `normalize_completed` normalizes
  and reconciles every completed run that neither this DAG nor `knit_ats_applications_on_delivery`
  has normalized yet.

Either way `publish` then updates the asset `knit://ats_applications`, so DAGs scheduled on it run on
fresh data. Each run is normalized once, by whichever DAG sees it first.

**Params** (trigger form): `integration_ids` (empty: every active integration of the registry
`knit_landing.integrations`, or, while it has none, the `integration_id` extra of `knit_default`),
`all_active` (the registry's active integrations, and fail if there are none), `models` (all six
by default), `scheduling`, `honor_scheduler`, `full_resync` (ask Knit for every application again
instead of a delta); sent to Knit only when set: `frequency`, `include_inactive_records`,
`start_hour`/`start_minute` (UTC) and `destination` (empty: `$KNIT_WEBHOOK_URL`, else the
`webhook_url` extra of `knit_default`, else none: Knit delivers to the webhook configured for the
ATS category in its dashboard).

**Backfills** (`airflow backfill create --dag-id knit_ats_applications --from-date … --to-date …`)
do not call Knit: each backfill run normalizes again the completed runs that landed in its data
interval (normalization is idempotent and order-independent), and its log says so.

**Connections**: `knit_default` (Knit API key and default integration),
`knit_landing_default` (the Postgres database holding `knit_landing` and `knit`).

Runs Knit starts on its own schedule are normalized by `knit_ats_applications_on_delivery` as they
complete; a newly connected customer's initial sync is followed by `knit_integration_onboarding`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 3.1: the Task SDK has no timetables yet; DAGs take the core one
    from airflow.timetables.interval import CronDataIntervalTimetable

from knit_provider.run_plans import (
    APPLICATIONS_ASSET,
    DAGRUN_TIMEOUT,
    DEFAULT_ARGS,
    TAGS,
    plan_run,
    skip_unless_backfill,
    skip_unless_knit_schedules,
    sync_params,
)
from knit_provider.operators.normalize import KnitNormalizeRunsOperator
from knit_provider.task_groups import sync_group

with DAG(
    dag_id="knit_ats_applications",
    description="Sync Knit ATS applications, wait for allConsumed, normalize and reconcile.",
    # Data intervals (not cron trigger points): a backfill run covers one whole day.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=DAGRUN_TIMEOUT,
    default_args=DEFAULT_ARGS,
    params=sync_params(),
    render_template_as_native_obj=True,
    tags=TAGS,
    doc_md=__doc__,
) as dag:

    @task(retries=1)
    def plan(**context: object) -> list[dict[str, str]]:
        """Validate the params; one entry per integration to sync (none in a backfill run)."""
        return plan_run(context)

    normalize_interval = KnitNormalizeRunsOperator(
        task_id="normalize_backfill_interval",
        since="{{ data_interval_start }}",
        until="{{ data_interval_end }}",
        pre_execute=skip_unless_backfill,
    )

    normalize_completed = KnitNormalizeRunsOperator(
        task_id="normalize_completed",
        pending=True,
        pre_execute=skip_unless_knit_schedules,
    )

    @task(outlets=[APPLICATIONS_ASSET], trigger_rule="none_failed_min_one_success")
    def publish(**context: object) -> None:
        """Mark knit://ats_applications as updated, so DAGs scheduled on it run."""

    planned = plan()
    groups = sync_group.expand_kwargs(planned)
    planned >> [normalize_interval, normalize_completed]
    [groups, normalize_interval, normalize_completed] >> publish()
