"""Landing 0003: weekly partitions of events created ahead and when the clock passes them, event ids
deduplicated inside the window (wherever the rows are), and the migration of a populated store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest
from knit_landing_helpers import land_as_release, store_at_version

from knit_provider.landing.migrate import MIGRATIONS, migrate
from knit_provider.landing.retention import ensure_partitions
from knit_provider.settings import Schemas

LAND = "SELECT {l}.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[], %s)"


@pytest.fixture(scope="module")
def conn(pg_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(pg_url)
    yield connection
    connection.close()


_schemas = iter(range(1, 1000))


@pytest.fixture
def schemas(conn: Any) -> Schemas:
    pair = Schemas(landing=f"part_{next(_schemas)}")
    migrate(conn, pair)
    return pair


def _land(conn: Any, schemas: Schemas, *event_ids: str, run: str = "sr-1") -> int:
    n = len(event_ids)
    envelopes = [json.dumps({"eventId": e, "eventType": "record.new", "syncRunId": run}) for e in event_ids]
    with conn, conn.cursor() as cur:
        cur.execute(
            LAND.format(l=schemas.landing),
            (
                list(event_ids),
                ["record.new"] * n,
                ["delta_sync"] * n,
                ["ats_applications"] * n,
                ["sj"] * n,
                [run] * n,
                list(event_ids),
                ["int-1"] * n,
                envelopes,
                ["exec-1"] * n,
            ),
        )
        return int(cur.fetchone()[0])


def _one(conn: Any, sql: str, params: Any = None) -> Any:
    with conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def _partition_of(conn: Any, schemas: Schemas, event_id: str) -> str:
    return str(
        _one(conn, f"SELECT tableoid::regclass::text FROM {schemas.landing}.events WHERE event_id = %s", (event_id,))[0]
    )


def _partitions(conn: Any, schemas: Schemas) -> dict[str, str]:
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (f"{schemas.landing}.events",),
        )
        return dict(cur.fetchall())


def _monday(at: datetime) -> datetime:
    day = at.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def test_partitions_are_created_ahead_and_a_row_past_them_lands_then_moves_into_its_own(
    conn: Any, schemas: Schemas
) -> None:
    now = _one(conn, "SELECT now()")[0]
    next_monday = _monday(now) + timedelta(weeks=1)
    parts = _partitions(conn, schemas)
    # The old table covers everything up to next Monday; four weeks are ready after it, and a DEFAULT.
    assert parts["events_legacy"].startswith("FOR VALUES FROM (MINVALUE)")
    assert parts["events_default"] == "DEFAULT"
    ahead = sorted(name for name in parts if name not in ("events_legacy", "events_default"))
    assert ahead == [f"events_{(next_monday + timedelta(weeks=k)):%Y%m%d}" for k in range(4)]
    assert ensure_partitions(conn, schemas) == 0, "a second call finds every week there"

    # The clock passes the last partition created (nothing ran for ten weeks): the insert does not fail.
    later = now + timedelta(weeks=10)
    with conn, conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {schemas.landing}.events (event_id, event_type, payload, received_at) "
            "VALUES ('late', 'record.new', '{}', %s) RETURNING seq",
            (later,),
        )
        (seq,) = cur.fetchone()
    assert _partition_of(conn, schemas, "late") == f"{schemas.landing}.events_default"

    # The next start-up or maintenance pass creates that week and moves the row into it, seq unchanged.
    assert ensure_partitions(conn, schemas, at=later, weeks_ahead=1) == 2
    week = f"events_{_monday(later):%Y%m%d}"
    assert _partition_of(conn, schemas, "late") == f"{schemas.landing}.{week}"
    assert _one(conn, f"SELECT seq FROM {schemas.landing}.events WHERE event_id = 'late'")[0] == seq
    assert _one(conn, f"SELECT count(*) FROM {schemas.landing}.events_default")[0] == 0
    assert f"events_{(_monday(later) + timedelta(weeks=1)):%Y%m%d}" in _partitions(conn, schemas)


def test_a_busy_default_partition_delays_a_week_and_never_the_caller(conn: Any, schemas: Schemas, pg_url: str) -> None:
    later = _one(conn, "SELECT now()")[0] + timedelta(weeks=20)
    reader = psycopg2.connect(pg_url)
    try:
        with reader.cursor() as cur:  # a long transaction that read events_default
            cur.execute(f"SELECT count(*) FROM {schemas.landing}.events_default")
        assert ensure_partitions(conn, schemas, at=later, weeks_ahead=0, lock_timeout="100ms") == 0
    finally:
        reader.close()
    assert _one(conn, "SHOW lock_timeout")[0] == "0", "the caller's setting is restored"
    assert ensure_partitions(conn, schemas, at=later, weeks_ahead=0) == 1, "the next pass creates it"


def test_an_id_is_landed_once_inside_the_window_wherever_its_row_is(conn: Any, schemas: Schemas) -> None:
    assert _land(conn, schemas, "e1", "e2", "e1") == 2, "a repeat inside one batch lands once"
    # Move e1's row to a later week's partition: deduplication does not depend on where the row lives.
    with conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE {schemas.landing}.events SET received_at = received_at + interval '14 days' WHERE event_id = 'e1'"
        )
    assert _partition_of(conn, schemas, "e1") != _partition_of(conn, schemas, "e2")
    assert _land(conn, schemas, "e1", "e2", "e3") == 1
    assert _one(conn, f"SELECT record_events FROM {schemas.landing}.sync_runs")[0] == 3
    assert _one(conn, f"SELECT count(*) FROM {schemas.landing}.events")[0] == 3


def test_a_redelivery_after_the_window_lands_again(conn: Any, schemas: Schemas) -> None:
    _land(conn, schemas, "old", "recent")
    with conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE {schemas.landing}.event_ids SET received_at = now() - interval '8 days' WHERE event_id = 'old'"
        )
        cur.execute(f"SELECT {schemas.landing}.forget_event_ids()")
        assert cur.fetchone()[0] == 1
    assert _land(conn, schemas, "old", "recent") == 1, "only the id past the window lands again"
    assert _one(conn, f"SELECT count(*) FROM {schemas.landing}.events WHERE event_id = 'old'")[0] == 2


def _insert_old(
    cur: Any,
    landing: str,
    event_id: str,
    run: str,
    days_ago: float,
    event_type: str = "record.new",
    data: dict[str, Any] | None = None,
) -> None:
    """A row as 0002's land_events left it, landed ``days_ago`` days ago."""
    envelope = {
        "eventId": event_id,
        "eventType": event_type,
        "syncType": "delta_sync",
        "syncDataType": "ats_applications",
        "syncJobId": "sj",
        "syncRunId": run,
        "recordId": event_id,
        "eventData": data or {},
    }
    land_as_release(cur, Schemas(landing=landing), 2, [envelope], days_ago=days_ago)


def test_0003_on_a_populated_0002_store_loses_nothing(conn: Any) -> None:
    schemas = Schemas(landing="part_v2")
    landing = schemas.landing
    with conn, conn.cursor() as cur:
        store_at_version(cur, schemas, 2)
        # A year of history, landed in time order: a run 300 days ago, one 20 days ago, one landing now.
        for k in range(3):
            _insert_old(cur, landing, f"old-{k}", "r-old", 300 - k)
        _insert_old(cur, landing, "done", "r-old", 297, "sync.events.allConsumed", {"consumed": "3"})
        for k in range(3):
            _insert_old(cur, landing, f"mid-{k}", "r-mid", 20 - k)
        for k in range(3):
            _insert_old(cur, landing, f"new-{k}", "r-new", 0.5)
        cur.execute(f"SELECT * FROM {landing}.events ORDER BY seq")
        events_before = cur.fetchall()
        cur.execute(f"SELECT * FROM {landing}.sync_runs ORDER BY sync_run_id")
        runs_before = cur.fetchall()
        cur.execute(f"SELECT max(seq) FROM {landing}.events")
        (max_seq,) = cur.fetchone()

    assert migrate(conn, schemas) == list(MIGRATIONS[2:])

    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT relkind FROM pg_class WHERE oid = '{landing}.events'::regclass")
        assert cur.fetchone()[0] == "p"
        cur.execute(
            f"SELECT seq, event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id, "
            f"record_id, integration_id, payload, received_at, execution_id FROM {landing}.events ORDER BY seq"
        )
        assert cur.fetchall() == events_before
        cur.execute(f"SELECT * FROM {landing}.sync_runs ORDER BY sync_run_id")
        assert [row[:-1] for row in cur.fetchall()] == runs_before, "only events_pruned_at (NULL) is new"
        # The ids inside the dedup window are remembered; the history's are not kept for ever.
        cur.execute(f"SELECT event_id FROM {landing}.event_ids ORDER BY 1")
        assert [row[0] for row in cur.fetchall()] == ["new-0", "new-1", "new-2"]
        cur.execute(f"SELECT DISTINCT tableoid::regclass::text FROM {landing}.events")
        assert [row[0] for row in cur.fetchall()] == [f"{landing}.events_legacy"], "attached in place, not copied"

    # Writing continues: seq goes on from the old identity, an id inside the window is refused, an id of
    # the history (far past the window) lands again as a new event.
    assert _land(conn, schemas, "new-0", "fresh", "old-0", run="r-new") == 2
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT event_id, seq FROM {landing}.events WHERE seq > %s ORDER BY seq", (max_seq,))
        landed = cur.fetchall()
    assert [e for e, _ in landed] == ["fresh", "old-0"]
    assert landed[0][1] > max_seq
