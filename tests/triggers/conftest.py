"""Fixtures of the trigger tests (``lander`` comes from tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def landing_conn(landing_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the default landing connection at this module's database."""
    monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", landing_url)
    return landing_url
