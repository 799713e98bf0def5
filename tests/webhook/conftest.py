"""Fixtures of the receiver tests (helpers live in ``receiver_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from receiver_helpers import InProcess, settings_for


@pytest.fixture(params=["asgi", "raw"])
def front(request: pytest.FixtureRequest) -> str:
    """Each front end of the receiver: the ASGI app (mounted in Airflow) and the standalone HTTP server."""
    return str(request.param)


@pytest.fixture
def in_process(landing_url: str, front: str) -> Iterator[InProcess]:
    harness = InProcess(settings_for(landing_url), front)
    yield harness
    harness.close()
