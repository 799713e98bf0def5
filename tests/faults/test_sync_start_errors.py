"""Fault: Knit's ``sync.start`` answers 429, then 5xx, before it succeeds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from fault_checks import INTEGRATION, assert_nothing_lost_doubled_or_wrong, normalize_pending
from structlog.testing import capture_logs

from knit_devtools.stack import Stack
from knit_provider.operators.start_sync import START_XCOM_KEY, StartSyncOperator


class _TaskInstance:
    """The one piece of Airflow's runtime the operator touches outside ``dag.test()``: ``xcom_push``."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_sync_start_retried_through_429_and_503_starts_one_run(
    make_stack: Callable[..., Stack],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Injected (simulator flags): the first two API calls answer 429 and the next two 503, each with
    ``Retry-After: 1``. StartSyncOperator (through KnitHook) must honour them, start exactly one sync,
    then wait (in the worker, non-deferrable) for its allConsumed; the tables end exact.
    """
    stack = make_stack(1_000, simulator_args=["--api-429", "2", "--api-5xx", "2", "--retry-after", "1"])
    for name, value in stack.airflow_env().items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    ti = _TaskInstance()

    operator = StartSyncOperator(
        task_id="start",
        destination=stack.webhook_url,
        integration_id=INTEGRATION,
        # A 503 leaves open whether Knit started the run: the operator looks in the landing store first.
        unknown_outcome_grace=1,
        wait_for_completion=True,
        deferrable=False,
        poll_interval=5,
        timeout=120,
    )
    with capture_logs() as events:  # the hook logs through Airflow's structlog, before any masking
        result = operator.execute({"ti": ti})  # type: ignore[typeddict-item]
    logged = "\n".join([str(event) for event in events] + [record.getMessage() for record in caplog.records])

    (run,) = stack.sim.runs(integration_id=INTEGRATION)
    assert result["sync_job_id"] == run["syncJobId"] == ti.pushed[START_XCOM_KEY]["sync_job_id"]
    assert result["sync_run_id"] == run["syncRunId"], "the wait must end on the run this call started"
    assert result["consumed"] == run["consumed"] == 1_000
    retries = [str(e["event"]) for e in events if "retrying" in str(e["event"])]
    assert [("429" in m, "503" in m) for m in retries] == [(True, False)] * 2 + [(False, True)] * 2, retries
    assert all("Retry-After" in m for m in retries)
    assert stack.api_key not in logged

    assert normalize_pending(stack.database_url) == [run["syncRunId"]]
    assert_nothing_lost_doubled_or_wrong(stack)
