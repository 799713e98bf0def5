"""Migration 0006 and ``landing/starts.py``: the record of each start, the runs that began, who started a run.

The store is built at migration 0005 and populated through ``land_events`` before 0006 is applied, as a
release upgrading a live store would meet it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest
from knit_landing_helpers import Lander, store_at_version

from knit_provider.landing import starts
from knit_provider.landing.migrate import MIGRATIONS, migrate
from knit_provider.settings import Schemas

SCHEMAS = Schemas()
KEY = starts.AttemptKey("knit_ats_applications", "manual__1", "sync.start_sync", 3)


def _runs(cur: Any) -> list[tuple[Any, ...]]:
    cur.execute("SELECT * FROM knit_landing.sync_runs ORDER BY sync_run_id")
    return cur.fetchall()


@pytest.fixture(scope="module")
def upgraded(pg_url: str) -> Iterator[dict[str, Any]]:
    """A 0005 store holding a completed run and a run under way, then migrated: what changed, and the store."""
    conn = psycopg2.connect(pg_url)
    with conn, conn.cursor() as cur:
        store_at_version(cur, SCHEMAS, 5, with_functions=True)
    lander = Lander(pg_url, integration_id="int-old")
    lander.records("job-old", "run-done", 3)
    lander.all_consumed("job-old", "run-done", 3)
    lander.records("job-old", "run-going", 2)
    with conn, conn.cursor() as cur:
        before = _runs(cur)
    applied = migrate(conn, SCHEMAS)
    yield {"url": pg_url, "conn": conn, "before": before, "applied": applied}
    lander.close()
    conn.close()


@pytest.fixture
def cur(upgraded: dict[str, Any]) -> Iterator[Any]:
    with upgraded["conn"], upgraded["conn"].cursor() as cursor:
        yield cursor


def test_0006_on_a_populated_0005_store_keeps_every_run_and_adds_an_empty_record_of_starts(upgraded, cur):
    assert upgraded["applied"] == list(MIGRATIONS[5:]) == ["landing/0006_sync_starts.sql"]
    assert len(upgraded["before"]) == 2
    assert _runs(cur) == upgraded["before"]
    cur.execute("SELECT count(*) FROM knit_landing.sync_starts")
    assert cur.fetchone() == (0,)
    # The runs landed before the migration are found through the new index's columns.
    cur.execute("SELECT min(first_received_at) FROM knit_landing.sync_runs")
    (first,) = cur.fetchone()
    found = starts.find_begun(cur, SCHEMAS, "int-old", "ats_applications", first)
    assert found is not None
    assert found.sync_job_id == "job-old"


def test_a_retry_keeps_the_first_request_time_and_reads_back_the_answer(cur):
    assert starts.read_attempt(cur, SCHEMAS, KEY) is None

    first = starts.record_request(cur, SCHEMAS, KEY, "int-a", "ats_applications")
    cur.execute("SELECT now()")
    assert first == cur.fetchone()[0], "the database clock, in the same transaction"
    cur.connection.commit()
    again = starts.record_request(cur, SCHEMAS, KEY, "int-a", "ats_applications")
    assert again == first, "a retry keeps the first try's request time"
    unanswered = starts.read_attempt(cur, SCHEMAS, KEY)
    assert unanswered == starts.StartAttempt(first, False, None, None, None, None)

    starts.record_answer(
        cur,
        SCHEMAS,
        KEY,
        integration_id="int-a",
        data_type="ats_applications",
        sync_job_id="sj-a",
        sync_run_id="sr-a",
        started_by="airflow",
        waited_seconds=0.0,
    )
    assert starts.read_attempt(cur, SCHEMAS, KEY) == starts.StartAttempt(first, True, "sj-a", "sr-a", "airflow", 0.0)


def test_an_answered_start_must_name_its_job_and_who_started_it(cur):
    with pytest.raises(psycopg2.errors.CheckViolation):
        cur.execute(
            "INSERT INTO knit_landing.sync_starts (dag_id, dag_run_id, task_id, map_index, integration_id, "
            "data_type, answered) VALUES ('d', 'r', 't', -1, 'i', 'ats_applications', true)"
        )
    cur.connection.rollback()


def test_find_begun_takes_the_first_run_of_that_integration_and_type_since_the_time(upgraded, cur):
    url = upgraded["url"]
    wanted, elsewhere = Lander(url, integration_id="int-f"), Lander(url, integration_id="int-g")
    jobs = Lander(url, integration_id="int-f", data_type="ats_jobs")
    try:
        wanted.records("job-f", "run-f-before", 1)
        since = wanted.now() + timedelta(microseconds=1)
        elsewhere.records("job-g", "run-g", 1)
        jobs.records("job-j", "run-j", 1)
        assert starts.find_begun(cur, SCHEMAS, "int-f", "ats_applications", since) is None

        initial = wanted.event("record.new", "job-f", "run-f-initial", {"info": {"id": "a"}}, "a")
        wanted.land([{**initial, "syncType": "initial_sync"}])
        wanted.records("job-f", "run-f-delta", 1)

        found = starts.find_begun(cur, SCHEMAS, "int-f", "ats_applications", since)
        assert found is not None
        assert (found.sync_run_id, found.sync_job_id, found.sync_type) == ("run-f-initial", "job-f", "initial_sync")
        assert found.first_received_at >= since
        delta = starts.find_begun(cur, SCHEMAS, "int-f", "ats_applications", since, "delta_sync")
        assert delta is not None
        assert delta.sync_run_id == "run-f-delta"
    finally:
        for lander in (wanted, elsewhere, jobs):
            lander.close()


def test_wait_for_begun_answers_none_once_the_grace_is_over(upgraded):
    conn = psycopg2.connect(upgraded["url"])
    conn.autocommit = True
    try:
        began = time.monotonic()
        since = datetime(2000, 1, 1, tzinfo=timezone.utc)
        assert starts.wait_for_begun(conn, SCHEMAS, "int-none", "ats_applications", since, None, 0.3) is None
        assert 0.3 <= time.monotonic() - began < 5
    finally:
        conn.close()


def test_what_a_stopped_task_says_about_its_run():
    assert starts.run_goes_on("sr-1", "sj-1") == (
        "Knit has no call to stop a sync: run sr-1 of job sj-1 goes on; "
        "the on-delivery DAG of its data type (knit_<data type>_on_delivery) normalizes it when it completes"
    )
