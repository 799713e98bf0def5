"""Airflow internals the tests reach, imported from wherever the installed Airflow keeps them.

The provider supports Airflow 3.1 and later (pyproject.toml). Airflow 3.2 moved the DAG bag, the
DAG serializer, the writer of the DAG table and the Task SDK's view of the providers; ``make test``
runs the suite on the newest Airflow, ``make test-compat`` on 3.1, so both places must resolve.
Only tests import this module: the provider itself uses no Airflow internals that moved.
"""

from __future__ import annotations

from typing import Any

try:  # Airflow 3.2 and later
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.serialization.serialized_objects import DagSerialization
except ImportError:  # Airflow 3.1: one class serializes DAGs and writes the DAG table; one providers manager
    from airflow.models.dagbag import DagBag
    from airflow.providers_manager import ProvidersManager as ProvidersManagerTaskRuntime
    from airflow.serialization.serialized_objects import SerializedDAG
    from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization


def loaded_plugins() -> tuple[list[Any], dict[str, str]]:
    """Load Airflow's plugins (entry points and the plugins folder); return them and the import errors by source."""
    from airflow import plugins_manager

    if hasattr(plugins_manager, "_get_plugins"):  # Airflow 3.2 and later
        return plugins_manager._get_plugins()
    plugins_manager.ensure_plugins_loaded()
    return list(plugins_manager.plugins or []), dict(plugins_manager.import_errors)


__all__ = ["DagBag", "DagSerialization", "ProvidersManagerTaskRuntime", "SerializedDAG", "loaded_plugins"]
