"""Fixtures of the sensor tests (``lander`` comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def landing_conn(landing_url: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the default landing connection at this module's database, with Airflow's metadata DB ready."""
    monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", landing_url)
    return landing_url
