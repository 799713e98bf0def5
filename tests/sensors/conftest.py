"""Fixtures of the sensor tests; the landing helpers are shared with the trigger tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "triggers"))

from knit_landing_helpers import Lander


@pytest.fixture
def lander(landing_url: str) -> Iterator[Lander]:
    lander = Lander(landing_url)
    try:
        yield lander
    finally:
        lander.close()


@pytest.fixture
def landing_conn(landing_url: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the default landing connection at this module's database, with Airflow's metadata DB ready."""
    monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", landing_url)
    return landing_url
