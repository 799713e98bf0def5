"""The installed Airflow's version, for the few places where an API differs across the supported range.

Airflow's own providers keep such a module each (rather than importing another provider's); most
differences are absorbed by ``airflow.providers.common.compat`` instead, so this stays short.
"""

from __future__ import annotations


def _airflow_version() -> tuple[int, int, int]:
    from airflow import __version__
    from packaging.version import Version

    version = Version(__version__)
    return version.major, version.minor, version.micro


#: Airflow 3.2 added ``param_dag_id`` to the API server's ``requires_access_dag`` guard.
AIRFLOW_V_3_2_PLUS: bool = _airflow_version() >= (3, 2, 0)
