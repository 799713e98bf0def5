"""
### Knit ATS applications, on delivery: normalize each run Knit completes on its own schedule

Knit runs delta syncs on its own schedule (the `frequency` of the sync job) and pushes the
changes to the webhook whether or not Airflow asked. This DAG is **scheduled by an asset
watcher**: a trigger in the triggerer watches the landing store and, for every run whose
`sync.events.allConsumed` has landed and which is not normalized yet, emits one event on the
asset `knit://knit_landing/completed_runs`. Each DAG run normalizes and reconciles the runs it
was told about, then updates `knit://ats_applications`, the same asset as
`knit_ats_applications`, so downstream DAGs do not care which path brought the data.

No worker waits for anything: between deliveries, the only cost is the trigger's one database
connection in the triggerer.

Runs started by `knit_ats_applications` are normalized by that DAG; one is announced here as well
only if the watcher sees it complete before that DAG normalizes it. Whichever DAG comes first
normalizes it; the other passes over it (each run is normalized once), so both DAGs may be on. When a
task of another DAG stops while Knit's run goes on (Knit has no call to stop a sync), the run is
normalized here when it completes. A manual run of this DAG has no
announcement and normalizes nothing: to catch up by hand, backfill `knit_ats_applications` or run
`python -m knit_provider normalize --pending`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from knit_provider.run_plans import APPLICATIONS_ASSET, DEFAULT_ARGS, TAGS, announced_ids
from knit_provider.operators.normalize import KnitNormalizeRunsOperator
from knit_provider.settings import ATS_APPLICATIONS
from knit_provider.triggers.completed_runs import CompletedRunsTrigger

COMPLETED_RUNS = Asset(
    name="knit_completed_runs",
    uri="knit://knit_landing/completed_runs",
    group="knit",
    watchers=[
        AssetWatcher(
            name="knit_completed_ats_application_runs", trigger=CompletedRunsTrigger(data_type=ATS_APPLICATIONS)
        )
    ],
)

with DAG(
    dag_id="knit_ats_applications_on_delivery",
    description="Normalize every ATS applications run Knit completes, as soon as it completes.",
    schedule=[COMPLETED_RUNS],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    # Several at once: Airflow can leave an asset event that arrives while the DAG is at max_active_runs
    # queued until the next event (apache/airflow#56050). Runs of one integration still normalize one
    # at a time (advisory locks), and each run once (skip_normalized).
    max_active_runs=8,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "asset-watcher"],
    doc_md=__doc__,
) as dag:

    @task
    def announced_runs(**context: object) -> list[str]:
        """The sync run ids the watcher's events of this DAG run name (several if they queued up)."""
        return announced_ids(context, COMPLETED_RUNS, "sync_run_id")

    # Normalizes, then reconciles each run against Knit's counts (a shortfall fails, without retries).
    KnitNormalizeRunsOperator(
        task_id="normalize_and_reconcile",
        run_ids=announced_runs(),
        skip_normalized=True,
        outlets=[APPLICATIONS_ASSET],
    )
