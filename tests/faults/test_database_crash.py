"""Fault: the landing database crashes (immediate stop) in the middle of an initial sync and comes back."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fault_checks import INTEGRATION, assert_nothing_lost_doubled_or_wrong, normalize_pending, only_run, wait_landed

from knit_devtools.embedded_postgres import EmbeddedPostgres
from knit_devtools.stack import Stack

APPLICATIONS = 3_000


@pytest.fixture
def server() -> Iterator[EmbeddedPostgres]:
    """A server of this test's own, since the test crashes it; fsync on, as in production."""
    with EmbeddedPostgres(fsync=True) as postgres:
        yield postgres


def test_database_crash_mid_sync_loses_nothing(server: EmbeddedPostgres, make_stack: Callable[..., Stack]) -> None:
    """Injected: ``pg_ctl stop -m immediate`` (no shutdown checkpoint: crash recovery on start) once a
    quarter of the initial sync has landed, then the server is started again on the same data.

    While it is down the receiver answers 503 (or the connection breaks mid-commit), Knit retries;
    after recovery every event the receiver answered 200 must still be there.
    """
    stack = make_stack(
        APPLICATIONS,
        database_url=server.create_database("knit"),
        simulator_args=["--concurrency", "16", "--retry-max-delay", "0.5"],
    )
    job_id = stack.sim.start_sync(INTEGRATION, stack.webhook_url)["data"]["syncJobId"]

    wait_landed(stack.database_url, APPLICATIONS // 4, job_id)
    server.crash()
    assert only_run(stack)["state"] != "completed", "the crash must happen while the run is in flight"
    server.start()

    run = stack.sim.wait_job(job_id, timeout=180)["runs"][-1]
    assert run["failures"] + run["refused"] > 0 or run["deliveryAttempts"] > run["emitted"] + 2, (
        "the simulator must have seen the receiver fail while the database was down"
    )
    assert normalize_pending(stack.database_url) == [run["syncRunId"]]
    assert_nothing_lost_doubled_or_wrong(stack)
