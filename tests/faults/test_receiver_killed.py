"""Fault: the receiver is killed with SIGKILL in the middle of an initial sync, then restarted."""

from __future__ import annotations

from collections.abc import Callable

from fault_checks import INTEGRATION, assert_nothing_lost_doubled_or_wrong, normalize_pending, only_run, wait_landed

from knit_devtools.stack import Stack

APPLICATIONS = 3_000


def test_sigkill_of_the_receiver_mid_sync_loses_nothing(make_stack: Callable[..., Stack]) -> None:
    """Injected: SIGKILL of the receiver's process group once a third of the initial sync has landed.

    Requests in flight get no answer (Knit retries them), requests while it is down are refused
    (retried too); the restarted receiver takes the rest. Every 200 it gave before dying was
    committed, so nothing the simulator counts as consumed may be missing.
    """
    stack = make_stack(APPLICATIONS, simulator_args=["--concurrency", "16", "--retry-max-delay", "0.5"])
    job_id = stack.sim.start_sync(INTEGRATION, stack.webhook_url)["data"]["syncJobId"]

    landed_before_kill = wait_landed(stack.database_url, APPLICATIONS // 3, job_id)
    stack.kill_receiver()
    assert only_run(stack)["state"] != "completed", "the kill must happen while the run is in flight"
    assert landed_before_kill < APPLICATIONS
    stack.start_receiver()

    run = stack.sim.wait_job(job_id, timeout=120)["runs"][-1]
    assert run["failures"] > 0, "the simulator must have seen the dead receiver"
    assert run["deliveryAttempts"] > run["emitted"]
    assert normalize_pending(stack.database_url) == [run["syncRunId"]]
    assert_nothing_lost_doubled_or_wrong(stack)
