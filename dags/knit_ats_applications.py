"""
### Knit ATS applications: sync, wait, normalize, reconcile

Starts a Knit sync of **ATS applications** for each integration, waits until Knit reports that
every event of that run was consumed by the webhook (`sync.events.allConsumed`), turns the landed
events into the tables of schema `knit` and checks that nothing is missing. Then it updates the
asset `knit://ats_applications`, so DAGs scheduled on it run on fresh data.

**One mapped task group per integration** (`sync`): `start_sync` → `wait_for_all_consumed`
(deferrable: the wait costs no worker slot) → `normalize` → `reconcile`.

**Params** (trigger form): `integration_ids` (empty: the `integration_id` extra of `knit_default`),
`models` (all six by default), `frequency` (`standard`, `medium`, `high`), `full_resync` (ask
Knit for every application again instead of a delta), `destination` (the webhook URL; empty:
`$KNIT_WEBHOOK_URL`, else the `webhook_url` extra of `knit_default`).
The first run of an integration is an `initial_sync`; later ones are deltas.

**Backfills** (`airflow backfill create --dag-id knit_ats_applications --from-date … --to-date …`)
do not call Knit: each backfill run normalizes again the completed runs that landed in its data
interval (normalization is idempotent and order-independent), and its log says so.

**Connections**: `knit_default` (Knit API key and default integration),
`knit_landing_default` (the Postgres database holding `knit_landing` and `knit`).

Runs Knit starts on its own schedule are normalized by `knit_ats_applications_on_delivery`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task, task_group

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 3.1: the Task SDK has no timetables yet; DAGs take the core one
    from airflow.timetables.interval import CronDataIntervalTimetable

from knit_provider.dag_defaults import (
    APPLICATIONS_ASSET,
    DAGRUN_TIMEOUT,
    DEFAULT_ARGS,
    LANDING_TASK_CONCURRENCY,
    START_SYNC_CONCURRENCY,
    TAGS,
    WAIT_TIMEOUT,
    plan_run,
    reconcile_runs,
    skip_unless_backfill,
    sync_params,
)
from knit_provider.lineage import report_reconcile_lineage
from knit_provider.operators.normalize import KnitNormalizeRunsOperator
from knit_provider.operators.start_sync import StartSyncOperator
from knit_provider.sensors.all_consumed import KnitAllConsumedSensor
from knit_provider.settings import ATS_APPLICATIONS

# The run id the group's own sensor returned (same map index as the task rendering it).
_WAITED_RUN_ID = "{{ ti.xcom_pull(task_ids='sync.wait_for_all_consumed', map_indexes=ti.map_index)['sync_run_id'] }}"

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

    @task_group(group_id="sync")
    def sync(integration_id: str, sync_type: str, destination: str) -> None:
        """Start one integration's sync, wait for its allConsumed, normalize and reconcile it."""
        started = StartSyncOperator(
            task_id="start_sync",
            data_type=ATS_APPLICATIONS,
            integration_id=integration_id,
            sync_type=sync_type,
            destination=destination,
            models="{{ params.models }}",
            frequency="{{ params.frequency }}",
            # sync.start is not idempotent: the hook retries transient answers itself; a task
            # retry would start a second sync.
            retries=0,
            max_active_tis_per_dagrun=START_SYNC_CONCURRENCY,
        )
        waited = KnitAllConsumedSensor(
            task_id="wait_for_all_consumed",
            sync=started.output,
            deferrable=True,
            timeout=WAIT_TIMEOUT.total_seconds(),
        )
        normalized = KnitNormalizeRunsOperator(
            task_id="normalize",
            run_ids=_WAITED_RUN_ID,
            reconcile=False,  # its own task below, so a shortfall shows as "reconcile" failing
            max_active_tis_per_dagrun=LANDING_TASK_CONCURRENCY,
        )

        @task(max_active_tis_per_dagrun=LANDING_TASK_CONCURRENCY)
        def reconcile(completion: dict[str, object]) -> list[dict[str, object]]:
            """Fail, with both numbers, if fewer record events landed than Knit emitted."""
            report_reconcile_lineage()  # for OpenLineage, when its provider is installed and configured
            return reconcile_runs([str(completion["sync_run_id"])])

        started >> waited >> normalized >> reconcile(waited.output)

    normalize_interval = KnitNormalizeRunsOperator(
        task_id="normalize_backfill_interval",
        since="{{ data_interval_start }}",
        until="{{ data_interval_end }}",
        pre_execute=skip_unless_backfill,
    )

    @task(outlets=[APPLICATIONS_ASSET], trigger_rule="none_failed_min_one_success")
    def publish(**context: object) -> None:
        """Mark knit://ats_applications as updated, so DAGs scheduled on it run."""

    planned = plan()
    groups = sync.expand_kwargs(planned)
    planned >> normalize_interval
    [groups, normalize_interval] >> publish()
