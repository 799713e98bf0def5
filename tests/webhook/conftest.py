"""Fixtures of the receiver tests (helpers live in ``receiver_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from receiver_helpers import InProcess, settings_for


@pytest.fixture
def in_process(landing_url: str) -> Iterator[InProcess]:
    harness = InProcess(settings_for(landing_url))
    yield harness
    harness.close()
