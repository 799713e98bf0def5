"""What every fault test ends with: normalize what completed, then prove nothing was lost, doubled or wrong.

The checks read three sources that must agree: the simulator's own counts (what Knit saw answered
with 200), the landing store (what the receiver committed) and the normalized tables (what
normalization made of it), compared with the simulator's ground truth.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import psycopg2

from knit_devtools.services import wait_until
from knit_devtools.stack import Stack
from knit_devtools.truth import differences
from knit_provider.normalize import normalize_runs, pending_runs, reconcile_run
from knit_provider.settings import RECORD_EVENT_TYPES, Schemas

INTEGRATION = "int-faults"

SCHEMAS = Schemas()
_RECORD_TYPES = list(RECORD_EVENT_TYPES)


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one read on a short-lived connection (the tests also crash the server under it)."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def landed_records(url: str, sync_job_id: str | None = None) -> int:
    """Record events landed so far (of one job when given): how far a sync has got, read from state."""
    params: tuple[Any, ...]
    if sync_job_id is None:
        sql, params = "SELECT count(*) FROM knit_landing.events WHERE event_type = ANY(%s)", (_RECORD_TYPES,)
    else:
        sql = "SELECT count(*) FROM knit_landing.events WHERE event_type = ANY(%s) AND sync_job_id = %s"
        params = (_RECORD_TYPES, sync_job_id)
    return int(query(url, sql, params)[0][0])


def wait_landed(url: str, more_than: int, sync_job_id: str | None = None, timeout: float = 60.0) -> int:
    """Block until more than ``more_than`` record events have landed: the "middle of the sync" moment."""
    seen = [0]

    def enough() -> bool:
        seen[0] = landed_records(url, sync_job_id)
        return seen[0] > more_than

    wait_until(enough, timeout, f"more than {more_than} landed record events", interval=0.02)
    return seen[0]


def normalize_pending(url: str, integration_ids: Iterable[str] | None = None) -> list[str]:
    """Normalize every completed, not yet normalized run (what the DAGs do), then reconcile each.

    Returns the run ids normalized; a reconciliation shortfall fails the test with its numbers.
    """
    conn = psycopg2.connect(url)
    try:
        runs = pending_runs(conn, SCHEMAS, list(integration_ids) if integration_ids is not None else None)
        conn.rollback()
        normalize_runs(conn, runs, SCHEMAS)
        for run_id in runs:
            reconciliation = reconcile_run(conn, run_id, SCHEMAS)
            assert reconciliation.ok, reconciliation.describe()
    finally:
        conn.close()
    return runs


def normalize_pending_with_cli(url: str) -> str:
    """``python -m knit_provider normalize --pending``, as an operator would run it; returns its output.

    The command reconciles each run it normalizes and exits 1 on a shortfall.
    """
    done = subprocess.run(
        [sys.executable, "-m", "knit_provider", "--database-url", url, "normalize", "--pending"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"normalize exited {done.returncode}: {done.stdout}{done.stderr}"
    return done.stdout


def assert_nothing_lost_doubled_or_wrong(
    stack: Stack, integration_ids: Iterable[str] | None = None, url: str | None = None
) -> None:
    """The three promises, for every run the simulator made for these integrations.

    - Nothing acknowledged was lost: each simulator run completed, and the landing store holds as
      many distinct record events of it as the simulator counts consumed, plus its processed and
      allConsumed events (by event id; a quiet run may have no allConsumed).
    - Nothing stored twice: event ids are unique in the landing store (rows = distinct ids), a run
      holds one record event per application, and the normalized tables hold one row per
      (integration, application) and per (integration, candidate).
    - Exact: the normalized tables equal the simulator's ground truth.

    :param url: where to read (default the stack's database, as the receiver's role).
    """
    url = url or stack.database_url
    ids = list(integration_ids or stack.integration_ids)
    for integration_id in ids:
        runs = stack.sim.runs(integration_id=integration_id)
        assert runs, f"the simulator made no run for {integration_id}"
        for run in runs:
            run_id = run["syncRunId"]
            assert run["state"] == "completed", f"run {run_id} did not complete: {run}"
            assert run["consumed"] == run["emitted"], run
            ((landed, distinct_records),) = query(
                url,
                "SELECT count(*), count(DISTINCT record_id) FROM knit_landing.events "
                "WHERE sync_run_id = %s AND event_type = ANY(%s)",
                (run_id, _RECORD_TYPES),
            )
            assert landed == run["consumed"], (
                f"run {run_id}: simulator counts {run['consumed']} record events consumed, {landed} landed"
            )
            assert distinct_records == landed, f"run {run_id}: an application has two record events"
            run_event_ids = [*run["processedEventIds"], run["allConsumedEventId"]]
            run_event_ids = [event_id for event_id in run_event_ids if event_id is not None]
            found = query(url, "SELECT count(*) FROM knit_landing.events WHERE event_id = ANY(%s)", (run_event_ids,))[
                0
            ][0]
            assert found == len(run_event_ids), f"run {run_id}: not every run event of {run_event_ids} landed"

    ((rows, distinct_ids),) = query(url, "SELECT count(*), count(DISTINCT event_id) FROM knit_landing.events")
    assert rows == distinct_ids, f"{rows - distinct_ids} events stored twice"
    for table, key in (("ats_applications", "application_id"), ("ats_candidates", "candidate_id")):
        ((rows, distinct_keys),) = query(
            url, f"SELECT count(*), count(DISTINCT (integration_id, {key})) FROM knit.{table}"
        )
        assert rows == distinct_keys, f"knit.{table}: {rows - distinct_keys} rows stored twice"

    conn = psycopg2.connect(url)
    try:
        for integration_id in ids:
            assert differences(conn, stack.sim.truth(integration_id)) == []
    finally:
        conn.close()


async def first_event(trigger: Any, timeout: float | None = None) -> dict[str, Any]:
    """The payload of a trigger's first event (within ``timeout`` seconds when given)."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(first(), timeout)


def only_run(stack: Stack, integration_id: str | None = None) -> dict[str, Any]:
    """The latest simulator run of an integration (the one a test just started)."""
    runs = stack.sim.runs(integration_id=integration_id or stack.integration_ids[0])
    return max(runs, key=lambda run: run["requestedAt"])
