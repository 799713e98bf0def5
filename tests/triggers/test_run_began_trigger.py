"""RunBeganTrigger against a real Postgres: Knit's own run found by integration, data type and time, or none
within the grace; and what a killed wait says about its Knit run (AllConsumedTrigger.on_kill)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from knit_landing_helpers import Lander, checked

from knit_provider.triggers.all_consumed import AllConsumedTrigger
from knit_provider.triggers.listener import APPLICATION_NAME
from knit_provider.triggers.run_began import RunBeganTrigger

# Long enough that only NOTIFY can wake the trigger within a test's deadline.
SLOW_POLL = 60.0
DEADLINE = 15.0


async def only_event(trigger: RunBeganTrigger) -> dict[str, Any]:
    events = trigger.run()
    first = await anext(events)
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    return dict(first.payload)


def test_the_first_run_of_the_integration_since_the_time_is_found_when_it_notifies(landing_url, landing_conn):
    integration = f"int-began-{uuid.uuid4().hex[:8]}"
    ours, other = Lander(landing_url, integration_id=integration), Lander(landing_url, integration_id="int-other")
    try:

        async def scenario() -> dict[str, Any]:
            ours.records("job-b", "run-before", 1)  # began before the time: never the one
            since = ours.now()
            trigger = RunBeganTrigger(
                integration_id=integration, data_type="ats_applications", since=since, grace=60, poll_interval=SLOW_POLL
            )
            task = asyncio.create_task(only_event(trigger))
            await checked(landing_conn, APPLICATION_NAME)
            assert not task.done(), "found a run although none of this integration began since the time"
            other.records("job-o", "run-other", 1)
            other.processed("job-o", "run-other", 1, 1)
            ours.records("job-b", "run-knit", 2)
            ours.processed("job-b", "run-knit", 2, 2)  # record events send no NOTIFY; this one does
            return await asyncio.wait_for(task, DEADLINE)

        event = asyncio.run(scenario())
    finally:
        ours.close()
        other.close()

    assert event["status"] == "began"
    assert (event["sync_run_id"], event["sync_job_id"], event["sync_type"]) == ("run-knit", "job-b", "delta_sync")
    assert event["message"] == "Knit started it: run run-knit"
    assert 0 <= event["waited_seconds"] < DEADLINE


def test_no_run_within_the_grace_ends_the_wait_with_none(landing_url, landing_conn):
    lander = Lander(landing_url)
    since = lander.now()
    lander.close()
    trigger = RunBeganTrigger(
        integration_id="int-silent", data_type="ats_applications", since=since, grace=0.5, poll_interval=SLOW_POLL
    )

    event = asyncio.run(asyncio.wait_for(only_event(trigger), DEADLINE))

    assert event["status"] == "none"
    assert event["sync_run_id"] is None
    assert 0.5 <= event["waited_seconds"] <= 0.5 + 1e-3


def test_a_rebuilt_trigger_keeps_its_deadline():
    trigger = RunBeganTrigger(
        integration_id="int-a", data_type="ats_applications", since="2030-01-01T00:00:00Z", grace=300
    )
    path, kwargs = trigger.serialize()
    assert path == "knit_provider.triggers.run_began.RunBeganTrigger"
    rebuilt = RunBeganTrigger(**kwargs)
    assert rebuilt.deadline == trigger.deadline
    assert rebuilt.since == trigger.since


def test_a_killed_wait_says_the_knit_run_goes_on(caplog):
    from structlog.testing import capture_logs

    caplog.set_level(logging.INFO)
    trigger = AllConsumedTrigger(sync_job_id="sj-k", sync_run_id="sr-k", timeout=60)
    with capture_logs() as events:
        asyncio.run(trigger.on_kill())

    logged = [str(e["event"]) for e in events] + [r.getMessage() for r in caplog.records]
    assert (
        "Knit has no call to stop a sync: run sr-k of job sj-k goes on; "
        "the on-delivery DAG of its data type (knit_<data type>_on_delivery) normalizes it when it completes"
    ) in logged
