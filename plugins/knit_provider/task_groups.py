"""Task groups shared by the DAGs in ``dags/``: one definition, so the main DAG and onboarding cannot drift.

``sync_group`` is the per-integration chain of each data type's scheduled DAG (``dag_factory``): start a
sync, wait for it (deferrable), normalize, reconcile. ``knit_integration_onboarding`` maps the same group
over the integrations it claimed and the enabled data types. The DAG maps it with ``expand_kwargs`` over
``{integration_id, data_type, models, sync_type, destination, adopt_since, adopt_grace}``
(``run_plans.plan_syncs``, ``onboarding.plan_onboarding``); the other sync settings are read from its
params when present.
"""

from __future__ import annotations

from airflow.sdk import task, task_group

from knit_provider.lineage import report_reconcile_lineage
from knit_provider.operators.normalize import KnitNormalizeRunsOperator
from knit_provider.operators.start_sync import StartSyncOperator
from knit_provider.run_plans import (
    LANDING_TASK_CONCURRENCY,
    START_SYNC_CONCURRENCY,
    START_SYNC_RETRIES,
    WAIT_TIMEOUT,
    reconcile_runs,
)
from knit_provider.sensors.all_consumed import KnitAllConsumedSensor

SYNC_GROUP_ID = "sync"
# The run id the group's own sensor returned (same map index as the task rendering it).
_WAITED_RUN_ID = (
    "{{ ti.xcom_pull(task_ids='" + SYNC_GROUP_ID + ".wait_for_all_consumed', map_indexes=ti.map_index)"
    "['sync_run_id'] }}"
)


@task_group(group_id=SYNC_GROUP_ID)
def sync_group(
    integration_id: str,
    data_type: str,
    models: list[str],
    sync_type: str,
    destination: str,
    adopt_since: str | None,
    adopt_grace: float | None,
) -> None:
    """Start one integration's sync (or adopt the run Knit started), wait for its allConsumed, normalize and
    reconcile it."""
    started = StartSyncOperator(
        task_id="start_sync",
        data_type=data_type,
        integration_id=integration_id,
        sync_type=sync_type,
        # "" (nothing configured in Airflow): Knit delivers to the webhook set for the category in its dashboard.
        destination=destination or None,
        models=models,
        # Sent only when set; params.get: the onboarding DAG has no form for some of them.
        frequency="{{ params.get('frequency') }}",
        honor_scheduler="{{ params.get('honor_scheduler') }}",
        include_inactive_records="{{ params.get('include_inactive_records') }}",
        start_hour="{{ params.get('start_hour') }}",
        start_minute="{{ params.get('start_minute') }}",
        adopt_since=adopt_since,
        adopt_grace=adopt_grace,
        # A retry never starts a second run: it reuses an answered start, or first looks for the run an
        # unanswered one began (StartSyncOperator, "A retried start").
        retries=START_SYNC_RETRIES,
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
        data_type=data_type,
        # The on-delivery DAG may have normalized it first: each run is normalized once.
        skip_normalized=True,
        reconcile=False,  # its own task below, so a shortfall shows as "reconcile" failing
        max_active_tis_per_dagrun=LANDING_TASK_CONCURRENCY,
    )

    @task(max_active_tis_per_dagrun=LANDING_TASK_CONCURRENCY)
    def reconcile(completion: dict[str, object]) -> list[dict[str, object]]:
        """Fail, with both numbers, if fewer record events landed than Knit emitted."""
        report_reconcile_lineage()  # for OpenLineage, when its provider is installed and configured
        return reconcile_runs([str(completion["sync_run_id"])])

    # Called with the XComArg of the wait; Airflow resolves it to the dict at run time.
    started >> waited >> normalized >> reconcile(waited.output)  # type: ignore[arg-type]
