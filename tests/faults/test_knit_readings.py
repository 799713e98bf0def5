"""Knit as its pages allow it to behave, beyond our first guesses, end to end.

Each test runs the simulator with one of its readings (docs/internals.md, "What the simulator
guesses"), the real receiver over HTTP, a real Postgres, the triggers the DAGs wait with, and
normalization; each ends with the same proof as the other fault tests (nothing lost, doubled or
wrong against the simulator's ground truth), or with the failure a user must see.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from fault_checks import (
    INTEGRATION,
    assert_nothing_lost_doubled_or_wrong,
    first_event,
    normalize_pending,
    query,
)

from knit_devtools.stack import Stack
from knit_devtools.truth import differences
from knit_provider.triggers.all_consumed import AllConsumedTrigger
from knit_provider.triggers.completed_runs import CompletedRunsTrigger

APPLICATIONS = 400


def _use_landing_connection(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in stack.airflow_env().items():
        monkeypatch.setenv(name, value)


def _initial(stack: Stack) -> tuple[str, dict[str, Any]]:
    job_id = stack.sim.start_sync(INTEGRATION, stack.webhook_url)["data"]["syncJobId"]
    return job_id, stack.sim.wait_job(job_id, timeout=120)["runs"][-1]


def test_a_quiet_run_without_all_consumed_completes_for_the_waits_and_normalization(
    make_stack: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading: a run with nothing to emit sends progress reports and a final ``processed`` with
    ``emitted: 0``, and never ``allConsumed`` (``--skip-empty-all-consumed --progress-events 2``).

    The trigger a DAG run waits with is woken by that final report (its backup poll is a minute
    away, so only the notification can end the wait in time), the asset watcher announces the run,
    and normalization takes it as complete.
    """
    stack = make_stack(APPLICATIONS, simulator_args=["--skip-empty-all-consumed", "--progress-events", "2"])
    _use_landing_connection(stack, monkeypatch)
    job_id, initial = _initial(stack)
    assert initial["allConsumedEventId"] is not None  # it emitted records: allConsumed as usual
    assert normalize_pending(stack.database_url) == [initial["syncRunId"]]
    ((started_after,),) = query(stack.database_url, "SELECT now()")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str]:
        waiting = asyncio.create_task(
            first_event(
                AllConsumedTrigger(sync_job_id=job_id, started_after=started_after, poll_interval=60, timeout=120), 30
            )
        )
        quiet = await asyncio.to_thread(stack.sim.trigger_run, job_id, delta_share=0)
        event = await waiting
        announced = await first_event(CompletedRunsTrigger(data_type="ats_applications", poll_interval=60), 30)
        return event, announced, quiet["syncRunId"]

    event, announced, quiet_id = asyncio.run(scenario())
    quiet = stack.sim.wait_run(quiet_id, timeout=60)
    assert (quiet["emitted"], quiet["allConsumedEventId"], len(quiet["processedEventIds"])) == (0, None, 3)
    assert (event["status"], event["sync_run_id"], event["record_events"], event["emitted"]) == (
        "success",
        quiet_id,
        0,
        0,
    )
    assert "emitted: 0" in event["message"]
    assert (announced["sync_run_id"], announced["completed_by"], announced["all_consumed_at"]) == (
        quiet_id,
        "processed",
        None,
    )
    assert normalize_pending(stack.database_url) == [quiet_id]
    assert_nothing_lost_doubled_or_wrong(stack)


@pytest.mark.parametrize("kind", ["no-event-id", "truncated"])
def test_authentic_unusable_bodies_are_kept_once_answered_200_and_named_by_reconciliation(
    make_stack: Callable[..., Stack], kind: str
) -> None:
    """Reading: some record events arrive as correctly signed bodies no receiver can use
    (``--unusable-share 0.05 --unusable-kind KIND``), retried by Knit until they get a 200.

    Each is answered 200 at its first attempt, so Knit stops, the run ends with allConsumed, and each
    body is one dead letter. Reconciliation then fails the run and names its dead letters (those
    whose run id could be read) with the command to inspect them; nothing else is lost.
    """
    stack = make_stack(APPLICATIONS, simulator_args=["--unusable-share", "0.05", "--unusable-kind", kind])
    _, run = _initial(stack)
    run_id = run["syncRunId"]
    unusable = run["unusableSent"]
    assert unusable > 0, run
    assert run["state"] == "completed", run
    assert run["allConsumedEventId"], run
    assert run["failures"] == 0, "an authentic body was bounced at least once"
    letters = query(stack.database_url, "SELECT attempts, sync_run_id FROM knit_landing.dead_letters")
    assert len(letters) == unusable
    assert {attempts for attempts, _ in letters} == {1}
    named = sum(1 for _, letter_run in letters if letter_run == run_id)
    if kind == "no-event-id":
        assert named == unusable  # the rest of the envelope is readable
    ((landed,),) = query(
        stack.database_url,
        "SELECT count(*) FROM knit_landing.events WHERE sync_run_id = %s AND event_type LIKE 'record.%%'",
        (run_id,),
    )
    assert landed == run["emitted"] - unusable

    done = subprocess.run(
        [sys.executable, "-m", "knit_provider", "--database-url", stack.database_url, "normalize", "--pending"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    printed = done.stdout + done.stderr
    assert done.returncode == 1, printed
    assert run_id in printed
    if named:
        assert "dead-letters show" in printed
    # The snapshot step needs a reconciling run: nothing was withdrawn because of the missing events.
    ((deleted,),) = query(stack.database_url, "SELECT count(*) FROM knit.ats_applications WHERE is_deleted")
    assert deleted == 0


def test_deletes_with_empty_ids_keep_the_ids_the_application_had(make_stack: Callable[..., Stack]) -> None:
    """Reading: ``record.deleted`` carries ``"applicationId": "", "candidateId": "", "jobId": ""`` as on
    Knit's page (``--empty-deleted-ids``). The deleted applications keep their candidate and job."""
    stack = make_stack(APPLICATIONS, simulator_args=["--empty-deleted-ids", "--delta-share", "0.3"])
    job_id, _ = _initial(stack)
    normalize_pending(stack.database_url)
    delta = stack.sim.wait_run(stack.sim.trigger_run(job_id)["syncRunId"], timeout=120)
    assert delta["eventsByType"]["record.deleted"] > 0, delta
    assert normalize_pending(stack.database_url) == [delta["syncRunId"]]
    assert_nothing_lost_doubled_or_wrong(stack)
    ((blank,),) = query(
        stack.database_url,
        "SELECT count(*) FROM knit.ats_applications WHERE '' IN (application_id, candidate_id, job_id)",
    )
    ((deleted_with_ids,),) = query(
        stack.database_url,
        "SELECT count(*) FROM knit.ats_applications WHERE is_deleted "
        "AND candidate_id IS NOT NULL AND job_id IS NOT NULL",
    )
    assert (blank, deleted_with_ids) == (0, delta["eventsByType"]["record.deleted"])


def test_an_initial_sync_withdraws_what_deltas_never_reported(make_stack: Callable[..., Stack]) -> None:
    """Reading: a delta does not report deletions (``--silent-deletes``); Knit's initial sync sends every
    active record and nothing else, so a full resync is a snapshot and what it lacks is deleted."""
    stack = make_stack(APPLICATIONS, simulator_args=["--silent-deletes", "--delta-share", "0.3"])
    job_id, _ = _initial(stack)
    normalize_pending(stack.database_url)
    delta = stack.sim.wait_run(stack.sim.trigger_run(job_id)["syncRunId"], timeout=120)
    assert normalize_pending(stack.database_url) == [delta["syncRunId"]]
    silently_deleted = set(stack.sim.truth(INTEGRATION)["deleted"])
    assert silently_deleted
    conn = psycopg2.connect(stack.database_url)
    try:
        assert differences(conn, stack.sim.truth(INTEGRATION)) != [], "the deletions are not known yet"
    finally:
        conn.close()

    resync_job = stack.sim.start_sync(INTEGRATION, stack.webhook_url, sync_type="initial_sync")["data"]["syncJobId"]
    resync = stack.sim.wait_job(resync_job, timeout=120)["runs"][-1]
    assert normalize_pending(stack.database_url) == [resync["syncRunId"]]
    assert_nothing_lost_doubled_or_wrong(stack)
    withdrawn = {
        row[0] for row in query(stack.database_url, "SELECT application_id FROM knit.ats_applications WHERE is_deleted")
    }
    assert withdrawn == silently_deleted


@pytest.mark.parametrize("signing", [[], ["--sign-compact"]], ids=["signed-as-sent", "signed-compact"])
def test_bodies_that_are_not_compact_json_land_whichever_bytes_knit_signs(
    make_stack: Callable[..., Stack], signing: list[str]
) -> None:
    """Reading: bodies with spaces and ``\\u`` escapes (``--spaced-json --escaped-json``), signed over
    the bytes sent or over their compact form (``--sign-compact``): every one lands, none is refused."""
    stack = make_stack(APPLICATIONS, simulator_args=["--spaced-json", "--escaped-json", *signing])
    _, run = _initial(stack)
    assert run["failures"] == 0, run
    assert query(stack.database_url, "SELECT count(*) FROM knit_landing.dead_letters") == [(0,)]
    assert normalize_pending(stack.database_url) == [run["syncRunId"]]
    assert_nothing_lost_doubled_or_wrong(stack)
