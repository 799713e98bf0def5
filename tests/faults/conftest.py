"""Fixtures of the fault tests: a fresh database per test and a stack (simulator + receiver) on it.

Each test injects its own faults through the simulator's and the receiver's flags, so each gets its
own processes; the Postgres server is the session's (or, for the crash test, one of its own).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from fault_checks import INTEGRATION

from knit_devtools.stack import Stack


@pytest.fixture
def database(pg_server: Any, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for this one test."""
    return pg_server.create_database("f_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[-55:])


@pytest.fixture
def make_stack(database: str) -> Iterator[Callable[..., Stack]]:
    """Start a stack on this test's database with the given flags; stopped at the end of the test."""
    started: list[Stack] = []

    def make(
        applications: int = 2_000,
        simulator_args: Sequence[str] = (),
        receiver_args: Sequence[str] = (),
        database_url: str | None = None,
        seed: int = 5,
    ) -> Stack:
        stack = Stack(
            applications=applications,
            seed=seed,
            database_url=database_url or database,
            integration_ids=(INTEGRATION,),
            simulator_args=simulator_args,
            receiver_args=receiver_args,
        )
        started.append(stack)
        return stack.start()

    yield make
    for stack in started:
        stack.stop()
