"""
### Knit integration onboarding: a newly connected customer starts syncing by itself

Knit's users' customers connect their ATS at any time. When Knit has validated a connection it
sends `app.integration.activate` (its event glossary: "use this event as a trigger for starting data
syncs"), and, by its Syncs guide, starts the integration's initial sync by itself. The receiver
lands it and records it in the integration registry (`knit_landing.integrations`). This DAG is
**scheduled by an asset watcher**: a trigger in the triggerer announces each activation once on the asset `knit://knit_landing/activations`.

Each DAG run:
- `validation` **fails** with Knit's validation errors when an announced integration's newest
  activation has any; nothing is started for it (a later, clean activation onboards it).
- `plan` claims the announced integrations that are active, never onboarded and not being onboarded by
  another run, and maps the same group as `knit_ats_applications` over them and each enabled data type
  (`$KNIT_DATA_TYPES`, by default `ats_applications` and `ats_jobs`): `sync.start_sync` →
  `sync.wait_for_all_consumed` (deferrable) → `sync.normalize` → `sync.reconcile`. Here `start_sync`
  first waits, deferred, for the initial sync Knit starts by itself to begin landing, and adopts it (its
  log: "Knit started it"); only if none has begun within the grace period (`$KNIT_ONBOARDING_GRACE_SECONDS`,
  default 300) does it call `sync.start` (an `initial_sync` of the type's default models; its log:
  "started by Airflow after N min"). So a customer's ATS is never copied twice. A second
  activation of an integration whose initial sync runs starts nothing: the claim is held until
  `finish` (its log says who holds it).
- `publish` updates each enabled type's asset (`knit://ats_applications`, `knit://ats_jobs`), like the
  other DAGs.
- `finish` (a teardown: it always runs, and the DAG run still fails when a task above failed)
  marks onboarded the integrations whose run reconciled and releases the other claims, so a later
  activation, or the main DAG's "all active" run, tries again.

Disabled integrations (`python -m knit_provider integrations disable`) are not announced. Several
runs may be active at once, so one customer's long initial sync does not hold up the next one's.
A manual run has no announcement and onboards nothing: trigger `knit_ats_applications` instead.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task, teardown

from knit_provider.chaining import publish_changes
from knit_provider.data_types import enabled
from knit_provider.onboarding import check_validation, finish_onboarding, plan_onboarding
from knit_provider.run_plans import DAGRUN_TIMEOUT, DEFAULT_ARGS, TAGS, asset_for, sync_params
from knit_provider.settings import DEFAULT_LANDING_CONN_ID
from knit_provider.task_groups import SYNC_GROUP_ID, sync_group
from knit_provider.triggers.activations import ActivationsTrigger

ACTIVATIONS = Asset(
    name="knit_integration_activations",
    uri="knit://knit_landing/activations",
    group="knit",
    watchers=[AssetWatcher(name="knit_integration_activations", trigger=ActivationsTrigger())],
)
# The group reads these two params (each type syncs its default models); the integrations come from the
# activations, not from a form.
_SPECS = enabled()
_PARAMS = {
    name: param for name, param in sync_params(_SPECS[0]).items() if name in ("frequency", "include_inactive_records")
}

with DAG(
    dag_id="knit_integration_onboarding",
    description="Start, wait for, normalize and reconcile the initial sync of each newly activated integration.",
    schedule=[ACTIVATIONS],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    # Each run mostly waits (deferred) on one customer's initial sync; the registry's claim, not
    # serialization, keeps two runs from syncing the same integration.
    max_active_runs=8,
    dagrun_timeout=DAGRUN_TIMEOUT,
    default_args=DEFAULT_ARGS,
    params=_PARAMS,
    render_template_as_native_obj=True,
    tags=[*TAGS, "asset-watcher", "onboarding"],
    doc_md=__doc__,
) as dag:

    @task
    def validation(**context: object) -> list[str]:
        """Fail, with Knit's errors, if an announced integration's newest activation failed validation."""
        return check_validation(context, ACTIVATIONS)

    @task
    def plan(**context: object) -> list[dict[str, str]]:
        """Claim the announced integrations that need their initial sync; one group each."""
        return plan_onboarding(context, ACTIVATIONS)

    @task(outlets=[asset_for(spec) for spec in _SPECS], trigger_rule="none_failed_min_one_success")
    def publish(**context: Any) -> dict[str, Any]:
        """Update each enabled type's asset, so DAGs scheduled on them run; each event says what this run's
        initial syncs of that type changed (``knit_provider.chaining``)."""
        summaries = context["ti"].xcom_pull(task_ids=[f"{SYNC_GROUP_ID}.normalize"])
        return publish_changes(
            context, [asset_for(spec) for spec in _SPECS], summaries, landing_conn_id=DEFAULT_LANDING_CONN_ID
        )

    # A teardown: it runs whatever happened upstream, and its success does not hide a failed validation
    # or sync from the DAG run's state.
    @teardown
    def finish(**context: object) -> dict[str, list[str]]:
        """Mark onboarded what reconciled; release this run's other claims (runs whatever happened)."""
        ti = context["ti"]
        reconciled = ti.xcom_pull(task_ids=f"{SYNC_GROUP_ID}.reconcile", default=[])  # type: ignore[attr-defined]
        return finish_onboarding(context, reconciled)

    planned = plan()
    groups = sync_group.expand_kwargs(planned)
    groups >> publish()
    [groups, validation()] >> finish()
