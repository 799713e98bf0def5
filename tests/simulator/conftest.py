"""Fixtures of the simulator's tests: a simulator subprocess and a receiver in the test process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sim_receiver import API_KEY, Receiver, serve

from knit_simulator.testing import SimulatorProcess, run_simulator


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve() as r:
        yield r


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorProcess]:
    """One simulator for a test module; tests use distinct integration ids to stay independent."""
    with run_simulator(applications=60, seed=11, api_key=API_KEY) as sim:
        yield sim
