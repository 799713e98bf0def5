"""Fault: the triggerer restarts in the middle of a wait and rebuilds the trigger from ``serialize()``."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from fault_checks import (
    INTEGRATION,
    assert_nothing_lost_doubled_or_wrong,
    first_event,
    landed_records,
    normalize_pending,
    only_run,
    query,
)

from knit_devtools.stack import Stack
from knit_provider.triggers.all_consumed import AllConsumedTrigger

APPLICATIONS = 2_000


def rebuild(trigger: Any) -> Any:
    """What the triggerer does after a restart: import the class path, call it with the stored kwargs."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    stored = json.loads(json.dumps(kwargs))  # the kwargs travel through the metadata database as JSON
    return getattr(importlib.import_module(module), name)(**stored)


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a blocking condition off the event loop, so the trigger under test keeps running meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(condition):
        if loop.time() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


def test_trigger_rebuilt_mid_wait_fires_for_its_own_run(
    make_stack: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected: the waiting trigger is cancelled (triggerer shutdown) once the awaited run is a quarter
    landed, and a new one is built from its ``serialize()`` output after a JSON round trip. The job's
    previous run is complete (its allConsumed landed) and 20 of its events are re-sent late during the
    new run (``--late-redelivery 20``), so a trigger that matched "any run of the job" would fire
    wrongly; the rebuilt trigger must fire once, for the new run, with its counts.
    """
    stack = make_stack(APPLICATIONS, simulator_args=["--concurrency", "8", "--late-redelivery", "20"])
    for name, value in stack.airflow_env().items():
        monkeypatch.setenv(name, value)
    job_id = stack.sim.start_sync(INTEGRATION, stack.webhook_url)["data"]["syncJobId"]
    older = stack.sim.wait_job(job_id, timeout=120)["runs"][-1]
    assert normalize_pending(stack.database_url) == [older["syncRunId"]]

    ((started_after,),) = query(stack.database_url, "SELECT now()")
    waiting = AllConsumedTrigger(sync_job_id=job_id, started_after=started_after, poll_interval=60, timeout=120)

    async def scenario() -> tuple[dict[str, Any], str]:
        task = asyncio.create_task(first_event(waiting))
        await asyncio.to_thread(stack.sim.start_sync, INTEGRATION, stack.webhook_url)
        await until(
            lambda: landed_records(stack.database_url, job_id) > APPLICATIONS * 5 // 4,
            60,
            "a quarter of the new run to land",
        )
        assert not task.done(), f"the trigger fired before its run completed: {task.result()}"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        awaited_run = only_run(stack)["syncRunId"]
        assert only_run(stack)["state"] != "completed", "the restart must happen while the run is in flight"
        return await asyncio.wait_for(first_event(rebuild(waiting)), 120), awaited_run

    event, awaited_run = asyncio.run(scenario())
    newer = stack.sim.wait_job(job_id, timeout=60)["runs"][-1]
    assert newer["syncRunId"] == awaited_run != older["syncRunId"]
    assert newer["lateRedeliveriesSent"] == 20
    assert event["status"] == "success", event
    assert (event["sync_job_id"], event["sync_run_id"]) == (job_id, newer["syncRunId"])
    assert event["record_events"] == event["consumed"] == newer["consumed"] == APPLICATIONS

    assert normalize_pending(stack.database_url) == [newer["syncRunId"]]
    assert_nothing_lost_doubled_or_wrong(stack)
