"""Fixtures for hook tests: a Knit connection in the environment, a fake clock, a seeded hook."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from knit_hook_fakes import API_KEY, BASE, FakeClock


@pytest.fixture
def knit_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define connection ``knit_test`` from keyword fields; returns its id."""

    def define(conn_id: str = "knit_test", **fields: Any) -> str:
        conn: dict[str, Any] = {
            "conn_type": "knit",
            "host": BASE,
            "password": API_KEY,
            "extra": {"integration_id": "int_default"},
        }
        conn.update(fields)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_hook(knit_conn: Callable[..., str], clock: FakeClock) -> Callable[..., Any]:
    """Build a KnitHook on a fresh ``knit_test`` connection, with the fake clock and seeded jitter."""
    from knit_provider.hooks.knit import KnitHook

    def make(conn_fields: dict[str, Any] | None = None, **hook_args: Any) -> KnitHook:
        conn_id = knit_conn(**(conn_fields or {}))
        return KnitHook(conn_id, clock=clock, rng=random.Random(7), **hook_args)

    return make


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], str]]:
    """Capture every log line at DEBUG: Airflow's structlog loggers and stdlib (requests, urllib3).

    structlog events are captured before Airflow's secret masker runs, so a test on them checks
    that the hook never logs a secret, not merely that the masker hides it.
    """
    import structlog
    from structlog.testing import capture_logs

    for name in ("", "airflow.task", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    wrapper_class = structlog.get_config()["wrapper_class"]
    with capture_logs() as events:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        try:
            yield lambda: "\n".join(
                [str(event) for event in events] + [record.getMessage() for record in caplog.records]
            )
        finally:
            structlog.configure(wrapper_class=wrapper_class)
