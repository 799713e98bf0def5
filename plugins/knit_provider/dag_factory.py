"""The scheduled and on-delivery DAG of each Knit data type, built from its spec (``dags/knit_data_types.py``).

One definition for every type, so the DAGs of ``ats_applications`` and ``ats_jobs`` cannot drift. Their
ids are the spec's: ``knit_<type>`` and ``knit_<type>_on_delivery`` (the application DAGs keep the ids they
always had, so no history is orphaned). Building a DAG does no work: no connection, no database.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 3.1: the Task SDK has no timetables yet; DAGs take the core one
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[assignment]

from knit_provider.chaining import publish_changes
from knit_provider.data_types import DataTypeSpec
from knit_provider.operators.normalize import KnitNormalizeRunsOperator
from knit_provider.run_plans import (
    DAGRUN_TIMEOUT,
    DEFAULT_ARGS,
    announced_ids,
    asset_for,
    plan_run,
    skip_unless_backfill,
    skip_unless_knit_schedules,
    sync_params,
    tags_for,
)
from knit_provider.settings import DEFAULT_LANDING_CONN_ID
from knit_provider.task_groups import SYNC_GROUP_ID, sync_group
from knit_provider.triggers.completed_runs import CompletedRunsTrigger

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")
# The scheduled DAG's tasks that normalize: the asset event of its publish says what they changed.
NORMALIZE_TASKS = [f"{SYNC_GROUP_ID}.normalize", "normalize_backfill_interval", "normalize_completed"]

_SYNC_DOC = """
### Knit {title}: sync, wait, normalize, reconcile

Keeps the {records} tables of schema `knit` up to date with each integration's **{title}** (Knit's
`{name}`), in one of two ways (param `scheduling`, default `$KNIT_SCHEDULING`, else `airflow`; README,
"Running beside Knit's scheduler"):

- **`airflow`: Airflow schedules.** One mapped task group per integration (`sync`): `start_sync`
  (Knit's `sync.start`, with `honorScheduler: true` so Knit's own schedule stays as the customer set
  it) → `wait_for_all_consumed` (deferrable: the wait costs no worker slot) → `normalize` →
  `reconcile`. The first run of an integration is an `initial_sync`; later ones are deltas.
- **`knit`: Knit schedules, Airflow normalizes.** No `sync.start`: `normalize_completed` normalizes
  and reconciles every completed run that neither this DAG nor `{on_delivery}` has normalized yet.

Either way `publish` then updates the asset `{asset}`, so DAGs scheduled on it run on fresh data.
Each run is normalized once, by whichever DAG sees it first.

**Params** (trigger form): `integration_ids` (empty: every active integration of the registry
`knit_landing.integrations`, or, while it has none, the `integration_id` extra of `knit_default`),
`all_active` (the registry's active integrations, and fail if there are none), `models`,
`scheduling`, `honor_scheduler`, `full_resync` (ask Knit for every {record} again instead of a
delta); sent to Knit only when set: `frequency`, `include_inactive_records`, `start_hour`/`start_minute`
(UTC) and `destination` (empty: `$KNIT_WEBHOOK_URL`, else the `webhook_url` extra of `knit_default`,
else none: Knit delivers to the webhook configured for the category in its dashboard).

**Backfills** (`airflow backfill create --dag-id {dag_id} --from-date … --to-date …`) do not call
Knit: each backfill run normalizes again the completed runs that landed in its data interval
(normalization is idempotent and order-independent), and its log says so.

**Connections**: `knit_default` (Knit API key and default integration), `knit_landing_default` (the
Postgres database holding `knit_landing` and `knit`).

Runs Knit starts on its own schedule are normalized by `{on_delivery}` as they complete; a newly
connected customer's initial sync is followed by `knit_integration_onboarding`.
"""

_ON_DELIVERY_DOC = """
### Knit {title}, on delivery: normalize each run Knit completes on its own schedule

Knit runs delta syncs on its own schedule (the `frequency` of the sync job) and pushes the changes to
the webhook whether or not Airflow asked. This DAG is **scheduled by an asset watcher**: a trigger in
the triggerer watches the landing store and, for every `{name}` run whose `sync.events.allConsumed` has
landed and which is not normalized yet, emits one event on the asset `{completed}`. Each DAG run
normalizes and reconciles the runs it was told about, then updates `{asset}`, the same asset as
`{dag_id}`, so downstream DAGs do not care which path brought the data.

No worker waits for anything: between deliveries, the only cost is the trigger's one database
connection in the triggerer.

Runs started by `{dag_id}` are normalized by that DAG; one is announced here as well only if the
watcher sees it complete before that DAG normalizes it. Whichever DAG comes first normalizes it; the
other passes over it (each run is normalized once), so both DAGs may be on. When a task of another
DAG stops while Knit's run goes on (Knit has no call to stop a sync), the run is normalized here when
it completes. A manual run of this DAG has no announcement and normalizes nothing: to catch up by
hand, backfill `{dag_id}` or run `python -m knit_provider normalize --pending`.
"""


def _doc(template: str, spec: DataTypeSpec) -> str:
    return template.format(
        title=spec.title,
        name=spec.name,
        record=spec.record,
        records=spec.records,
        dag_id=spec.dag_id,
        on_delivery=spec.on_delivery_dag_id,
        asset=spec.asset_uri,
        completed=_completed_runs_names(spec)[1],
    )


def _completed_runs_names(spec: DataTypeSpec) -> tuple[str, str, str]:
    """The name and URI of the asset the type's watcher announces completed runs on, and the watcher's name
    (ats_applications keeps those of releases before data types)."""
    if spec.earlier_names:
        return "knit_completed_runs", "knit://knit_landing/completed_runs", "knit_completed_ats_application_runs"
    name = f"knit_completed_{spec.name}_runs"
    return name, f"knit://knit_landing/completed_runs/{spec.name}", name


def completed_runs_asset(spec: DataTypeSpec) -> Asset:
    """The asset the type's watcher announces completed runs on; its watcher is the type's CompletedRunsTrigger."""
    name, uri, watcher = _completed_runs_names(spec)
    return Asset(
        name=name,
        uri=uri,
        group="knit",
        watchers=[AssetWatcher(name=watcher, trigger=CompletedRunsTrigger(data_type=spec.name))],
    )


def sync_dag(spec: DataTypeSpec) -> DAG:
    """``knit_<type>``: start (or follow) each integration's sync daily, wait, normalize, reconcile, publish."""
    asset = asset_for(spec)
    with DAG(
        dag_id=spec.dag_id,
        description=f"Sync Knit {spec.title}, wait for allConsumed, normalize and reconcile.",
        # Data intervals (not cron trigger points): a backfill run covers one whole day.
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=DAGRUN_TIMEOUT,
        default_args=DEFAULT_ARGS,
        params=sync_params(spec),
        render_template_as_native_obj=True,
        tags=tags_for(spec),
        doc_md=_doc(_SYNC_DOC, spec),
    ) as dag:

        @task(retries=1)
        def plan(**context: object) -> list[dict[str, object]]:
            """Validate the params; one entry per integration to sync (none in a backfill run)."""
            return plan_run(context, spec=spec)

        normalize_interval = KnitNormalizeRunsOperator(
            task_id="normalize_backfill_interval",
            data_type=spec.name,
            since="{{ data_interval_start }}",
            until="{{ data_interval_end }}",
            pre_execute=skip_unless_backfill,
        )
        normalize_completed = KnitNormalizeRunsOperator(
            task_id="normalize_completed",
            data_type=spec.name,
            pending=True,
            pre_execute=skip_unless_knit_schedules,
        )

        @task(outlets=[asset], trigger_rule="none_failed_min_one_success")
        def publish(**context: Any) -> dict[str, Any]:
            """Update the type's asset, so DAGs scheduled on it run; its event says what this run's normalize tasks
            changed (``knit_provider.chaining``)."""
            summaries = context["ti"].xcom_pull(task_ids=NORMALIZE_TASKS)
            extras = publish_changes(context, [asset], summaries, landing_conn_id=DEFAULT_LANDING_CONN_ID)
            return extras[spec.name]

        planned = plan()
        groups = sync_group.expand_kwargs(planned)
        planned >> [normalize_interval, normalize_completed]
        [groups, normalize_interval, normalize_completed] >> publish()
    return dag


def on_delivery_dag(spec: DataTypeSpec) -> DAG:
    """``knit_<type>_on_delivery``: normalize and reconcile each run the watcher announces, then publish."""
    completed = completed_runs_asset(spec)
    with DAG(
        dag_id=spec.on_delivery_dag_id,
        description=f"Normalize every {spec.title} run Knit completes, as soon as it completes.",
        schedule=[completed],
        start_date=START_DATE,
        catchup=False,
        # Several at once: Airflow can leave an asset event that arrives while the DAG is at max_active_runs
        # queued until the next event (apache/airflow#56050). Runs of one integration still normalize one
        # at a time (advisory locks), and each run once (skip_normalized).
        max_active_runs=8,
        default_args=DEFAULT_ARGS,
        tags=[*tags_for(spec), "asset-watcher"],
        doc_md=_doc(_ON_DELIVERY_DOC, spec),
    ) as dag:

        @task
        def announced_runs(**context: object) -> list[str]:
            """The sync run ids the watcher's events of this DAG run name (several if they queued up)."""
            return announced_ids(context, completed, "sync_run_id")

        # Normalizes, then reconciles each run against Knit's counts (a shortfall fails, without retries).
        KnitNormalizeRunsOperator(
            task_id="normalize_and_reconcile",
            data_type=spec.name,
            run_ids=announced_runs(),  # type: ignore[arg-type]
            skip_normalized=True,
            outlets=[asset_for(spec)],
        )
    return dag
