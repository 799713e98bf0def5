"""Fixtures of the trigger tests (helpers live in knit_landing_helpers, shared with the sensor tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from knit_landing_helpers import Lander


@pytest.fixture
def lander(landing_url: str) -> Iterator[Lander]:
    lander = Lander(landing_url)
    try:
        yield lander
    finally:
        lander.close()


@pytest.fixture
def landing_conn(landing_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the default landing connection at this module's database."""
    monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", landing_url)
    return landing_url
