"""Helpers of the sensor tests: run a DAG defined in a test with ``dag.test()``."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG
from airflow.utils.state import TaskInstanceState

WAIT = 60.0


def run_dag(dag: DAG) -> Any:
    """``dag.test()`` a DAG defined here: register it first, as the DAG processor would for a file in dags/."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session
    from airflow_internals import SerializedDAG

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        SerializedDAG.bulk_write_to_db("dags-folder", None, [dag], session=session)
        SerializedDagModel.write_dag(LazyDeserializedDAG.from_dag(dag), bundle_name="dags-folder", session=session)
    return dag.test()


def states(run: Any) -> dict[str, TaskInstanceState]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}
