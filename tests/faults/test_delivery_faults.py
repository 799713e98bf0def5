"""Fault: Knit delivers 10% of events twice, in random order, and re-sends an older run's events late."""

from __future__ import annotations

from collections.abc import Callable

from fault_checks import (
    INTEGRATION,
    assert_nothing_lost_doubled_or_wrong,
    normalize_pending,
    normalize_pending_with_cli,
    query,
)

from knit_devtools.stack import Stack

APPLICATIONS = 2_000
LATE = 50


def test_duplicates_shuffle_and_late_redelivery_store_each_event_once(make_stack: Callable[..., Stack]) -> None:
    """Injected (simulator flags): ``--duplicate-share 0.1`` (a consumed event is delivered again, same
    eventId and body), ``--shuffle`` (records in random order), ``--late-redelivery 50`` (50 bodies of
    the initial run are re-sent during the delta run, with their old syncRunId).

    The initial run is normalized before the delta starts, so the late events reach a run that is
    already normalized; the tables must still end in the source's state after the delta, which is
    normalized with the command line (``python -m knit_provider normalize --pending``).
    """
    stack = make_stack(
        APPLICATIONS, simulator_args=["--duplicate-share", "0.1", "--shuffle", "--late-redelivery", str(LATE)]
    )
    job_id = stack.sim.start_sync(INTEGRATION, stack.webhook_url)["data"]["syncJobId"]
    initial = stack.sim.wait_job(job_id, timeout=120)["runs"][-1]
    assert initial["duplicatesSent"] >= APPLICATIONS // 20, initial
    assert normalize_pending(stack.database_url) == [initial["syncRunId"]]
    assert_nothing_lost_doubled_or_wrong(stack)

    delta_id = stack.sim.trigger_run(job_id)["syncRunId"]
    delta = stack.sim.wait_run(delta_id, timeout=120)
    assert delta["lateRedeliveriesSent"] == LATE, delta
    assert delta["duplicatesSent"] > 0, delta
    printed = normalize_pending_with_cli(stack.database_url)
    assert f"reconciled: run {delta_id}" in printed
    assert initial["syncRunId"] not in printed, "the initial run was normalized already"
    assert_nothing_lost_doubled_or_wrong(stack)

    # The late copies were recognised by eventId: the initial run still holds exactly its own events.
    ((initial_rows,),) = query(
        stack.database_url,
        "SELECT count(*) FROM knit_landing.events WHERE sync_run_id = %s AND event_type LIKE 'record.%%'",
        (initial["syncRunId"],),
    )
    assert initial_rows == APPLICATIONS
