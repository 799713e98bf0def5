"""
### The Airflow DAGs of each Knit data type this deployment syncs

For every enabled data type (`$KNIT_DATA_TYPES`, comma-separated; by default every built-in one:
`ats_applications`, `ats_jobs`), two DAGs built from the type's spec (`knit_provider.dag_factory`):
`knit_<type>` (scheduled: start or follow each integration's sync, wait, normalize, reconcile,
publish `knit://<type>`) and `knit_<type>_on_delivery` (normalize each run Knit completes on its own
schedule). Each DAG's own docs say what it does.
"""

from __future__ import annotations

from knit_provider.dag_factory import on_delivery_dag, sync_dag
from knit_provider.data_types import enabled

for _spec in enabled():
    globals()[_spec.dag_id] = sync_dag(_spec)
    globals()[_spec.on_delivery_dag_id] = on_delivery_dag(_spec)
