"""Landing 0005 (issue 21): what a replayed or re-addressed signed delivery can change.

Knit sends no nonce and the integration header is not signed. A replay after the dedup window of an event
of a closed run changes nothing; a header never moves a run's events to another tenant nor creates or
activates an integration; a different body under a known event id is kept as a dead letter, not dropped;
and a receiver's start-up never waits for the partitions lock (prune, maintenance).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg2
import pytest
from knit_landing_helpers import land_as_release, store_at_version

from knit_provider.landing import dead_letters
from knit_provider.landing.migrate import MIGRATIONS, amigrate, migrate
from knit_provider.landing.store import LandingStore, body_digest
from knit_provider.settings import Schemas, quote_ident
from knit_provider.webhook.envelope import DeadLetter, read_event
from knit_provider.webhook.settings import ReceiverSettings
from knit_provider.webhook.writer import GroupCommitWriter

_ids = itertools.count()
_schemas = itertools.count(1)
LAND_11 = "SELECT * FROM {l}.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[], %s, %s::bytea[])"
LAND_10 = "SELECT {l}.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[], %s)"


@pytest.fixture(scope="module")
def conn(pg_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(pg_url)
    yield connection
    connection.close()


@pytest.fixture
def schemas(conn: Any) -> Schemas:
    pair = Schemas(landing=f"replay_{next(_schemas)}")
    migrate(conn, pair)
    return pair


def record(run: str, event_id: str | None = None, **data: Any) -> dict[str, Any]:
    return {
        "eventId": event_id or f"ev-{next(_ids)}",
        "eventType": "record.new",
        "syncType": "delta_sync",
        "syncDataType": "ats_applications",
        "syncJobId": "sj-1",
        "syncRunId": run,
        "recordId": "app-1",
        "eventData": data or {"info": {"id": "app-1"}},
    }


def all_consumed(run: str) -> dict[str, Any]:
    return {
        **record(run),
        "eventType": "sync.events.allConsumed",
        "recordId": None,
        "eventData": {"complete": True, "emitted": "1", "consumed": "1"},
    }


def activation(integration: str | None) -> dict[str, Any]:
    data = {"activatedAt": "1700000000000"} | ({"integrationId": integration} if integration else {})
    return {"eventId": f"act-{next(_ids)}", "eventType": "app.integration.activate", "eventData": data}


def _args(events: list[dict[str, Any]], headers: list[str | None]) -> list[list[Any]]:
    keys = ("eventId", "eventType", "syncType", "syncDataType", "syncJobId", "syncRunId", "recordId")
    return [
        *([e.get(key) for e in events] for key in keys),
        headers,
        [json.dumps(e) for e in events],
        [None] * len(events),
    ]


def land(conn: Any, schemas: Schemas, events: list[dict[str, Any]], header: str | None = "int-a") -> int:
    """The ten-array call (tests, tools, benchmarks): how many events landed."""
    with conn, conn.cursor() as cur:
        cur.execute(LAND_10.format(l=schemas.landing), _args(events, [header] * len(events)))
        return int(cur.fetchone()[0])


def land_digested(
    conn: Any, schemas: Schemas, events: list[dict[str, Any]], headers: list[str | None]
) -> tuple[int, int, int, list[int]]:
    """The receiver's call, with the digests of the bodies: (landed, replayed, rehomed, conflicts)."""
    bodies = [json.dumps(e) for e in events]
    with conn, conn.cursor() as cur:
        cur.execute(
            LAND_11.format(l=schemas.landing), [*_args(events, headers), [body_digest(body) for body in bodies]]
        )
        landed, replayed, rehomed, conflicts = cur.fetchone()
    return landed, replayed, rehomed, conflicts


def one(conn: Any, sql: str, params: Any = ()) -> Any:
    with conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def snapshot(conn: Any, schemas: Schemas) -> tuple[Any, ...]:
    """Everything a landed event can change: events, ids, runs, registry."""
    tables = []
    with conn, conn.cursor() as cur:
        for table, order in (("events", "seq"), ("event_ids", "event_id"), ("sync_runs", "sync_run_id")):
            cur.execute(f"SELECT * FROM {schemas.landing}.{table} ORDER BY {order}")
            tables.append(cur.fetchall())
        cur.execute(f"SELECT * FROM {schemas.landing}.integrations ORDER BY integration_id")
        tables.append(cur.fetchall())
    return tuple(tables)


def age(conn: Any, schemas: Schemas, run: str, days: int, *, completed_days_ago: int | None = None) -> None:
    """Make run ``run`` have begun ``days`` ago (and completed ``completed_days_ago``); forget the ids past the
    window, as the hourly housekeeping does."""
    shift = {"run": run, "days": days, "done": days if completed_days_ago is None else completed_days_ago}
    with conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE {schemas.landing}.event_ids SET received_at = received_at - %(days)s * interval '1 day' "
            f"WHERE event_id IN (SELECT event_id FROM {schemas.landing}.events WHERE sync_run_id = %(run)s)",
            shift,
        )
        cur.execute(
            f"UPDATE {schemas.landing}.sync_runs SET first_received_at = first_received_at - %(days)s * interval "
            "'1 day', complete_at = complete_at - %(done)s * interval '1 day' WHERE sync_run_id = %(run)s",
            shift,
        )
        cur.execute(f"SELECT {schemas.landing}.forget_event_ids()")


# -- item 2a: replays of closed runs ----------------------------------------------------------------------------
def test_a_replay_after_the_window_of_a_complete_run_is_acknowledged_and_changes_nothing(
    conn: Any, schemas: Schemas
) -> None:
    first = record("sr-done")
    assert land(conn, schemas, [first, all_consumed("sr-done")]) == 2
    age(conn, schemas, "sr-done", 10)
    assert one(conn, f"SELECT count(*) FROM {schemas.landing}.event_ids")[0] == 0, "the ids are forgotten"
    before = snapshot(conn, schemas)

    # The signed record event resent with another tenant's header, then as sent: neither lands nor counts.
    assert land(conn, schemas, [first], header="victim-tenant") == 0
    assert land_digested(conn, schemas, [first, first], ["int-a", "int-a"]) == (0, 1, 0, [])
    assert snapshot(conn, schemas) == before
    assert one(conn, f"SELECT record_events FROM {schemas.landing}.sync_runs WHERE sync_run_id = 'sr-done'")[0] == 1

    # A run never seen before still lands, whatever its age says of its events.
    assert land(conn, schemas, [record("sr-new")]) == 1


def test_a_run_that_began_before_the_window_refuses_replays_as_soon_as_it_is_complete(
    conn: Any, schemas: Schemas
) -> None:
    """ "Complete for longer than the window" is not the rule: a run longer than the window forgets its first ids
    before it completes, and their replays must not land in the week after its completion."""
    early = record("sr-long")
    land(conn, schemas, [early, all_consumed("sr-long")])
    age(conn, schemas, "sr-long", 9, completed_days_ago=1)
    assert land(conn, schemas, [early]) == 0
    assert one(conn, f"SELECT count(*) FROM {schemas.landing}.events WHERE event_id = %s", (early["eventId"],))[0] == 1


def test_runs_not_closed_still_take_new_events(conn: Any, schemas: Schemas) -> None:
    # Complete, but begun inside the window: every id it landed is remembered, so an unknown one is no replay
    # (e.g. a dead letter replayed by hand once its cause is gone).
    land(conn, schemas, [record("sr-young"), all_consumed("sr-young")])
    assert land(conn, schemas, [record("sr-young")]) == 1
    # Old but not complete: its events land (the README says replays of it are not refused).
    land(conn, schemas, [record("sr-open")])
    age(conn, schemas, "sr-open", 10)
    assert land(conn, schemas, [record("sr-open")]) == 1
    assert one(conn, f"SELECT record_events FROM {schemas.landing}.sync_runs WHERE sync_run_id = 'sr-open'")[0] == 2


# -- item 2c: a header never moves a run -----------------------------------------------------------------------
def test_a_header_naming_another_integration_does_not_move_a_run(conn: Any, schemas: Schemas) -> None:
    land(conn, schemas, [record("sr-1")], header="int-a")
    landed, replayed, rehomed, conflicts = land_digested(
        conn, schemas, [record("sr-1"), record("sr-2"), record("sr-2")], ["victim", "int-b", "victim"]
    )
    assert (landed, replayed, rehomed, conflicts) == (3, 0, 2, [])
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT sync_run_id, array_agg(DISTINCT integration_id) FROM {schemas.landing}.events "
            "GROUP BY 1 ORDER BY 1"
        )
        assert cur.fetchall() == [("sr-1", ["int-a"]), ("sr-2", ["int-b"])], "a new run: its first event's header"
        cur.execute(f"SELECT integration_id FROM {schemas.landing}.sync_runs ORDER BY 1")
        assert [row[0] for row in cur.fetchall()] == ["int-a", "int-b"]
        cur.execute(f"SELECT integration_id FROM {schemas.landing}.integrations ORDER BY 1")
        assert [row[0] for row in cur.fetchall()] == ["int-a", "int-b"], "no registry row for the victim"


# -- item 2b: the registry takes an activation's id from its signed body only ----------------------------------
def test_an_activation_is_filed_under_its_event_data_and_a_header_alone_activates_nothing(
    conn: Any, schemas: Schemas
) -> None:
    assert land(conn, schemas, [activation("int-x")], header="victim-tenant") == 1
    assert land(conn, schemas, [activation(None)], header="victim-2") == 1, "stored as an event all the same"
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT integration_id, state FROM {schemas.landing}.integrations ORDER BY 1")
        assert cur.fetchall() == [("int-x", "active")]
        cur.execute(f"SELECT count(*) FROM {schemas.landing}.events WHERE event_type = 'app.integration.activate'")
        assert cur.fetchone()[0] == 2


# -- item 9: a different body under a known id -----------------------------------------------------------------
def test_a_different_body_under_a_known_id_is_reported_and_a_retry_is_not(conn: Any, schemas: Schemas) -> None:
    original = record("sr-1", "shared-id")
    other = record("sr-9", "shared-id", info={"id": "someone-else"})
    assert land_digested(conn, schemas, [original], ["int-a"])[0] == 1
    # Knit's retry (same bytes) is silent; a different body is reported by position, in or across batches.
    assert land_digested(conn, schemas, [original, other, original], ["int-a", "int-b", "int-a"]) == (0, 0, 0, [2])
    fresh = record("sr-1", "new-id")
    changed = {**fresh, "recordId": "app-2"}
    assert land_digested(conn, schemas, [fresh, changed], ["int-a", "int-a"]) == (1, 0, 0, [2])
    # An id remembered without a digest (landed before 0005, or by the ten-array call) counts as the same body.
    land(conn, schemas, [record("sr-1", "old-id")])
    assert land_digested(conn, schemas, [record("sr-1", "old-id", info={"id": "x"})], ["int-a"]) == (0, 0, 0, [])
    assert one(conn, f"SELECT count(*) FROM {schemas.landing}.events WHERE event_id = 'shared-id'")[0] == 1


def test_the_receiver_keeps_a_different_body_under_a_known_id_as_a_dead_letter(pg_url: str) -> None:
    schemas = Schemas(landing="replay_writer")
    settings = ReceiverSettings(
        database_url=pg_url, secret=b"k", schemas=schemas, writers=1, summary_interval_seconds=3600
    )
    first = json.dumps(record("sr-1", "dup-id")).encode()
    retry = first
    other = json.dumps(record("sr-2", "dup-id", info={"id": "other"})).encode()
    headers = [(b"x-knit-integration-id", b"int-b")]

    async def deliver() -> list[str | None]:
        writer = GroupCommitWriter(settings)
        await writer.start()
        try:
            answers = [await writer.submit_event(read_event(first, "int-a"), True, headers)]
            for body in (retry, other):
                answers.append(await writer.submit_event(read_event(body, "int-b"), True, headers))
            return answers
        finally:
            await writer.close()

    reason = "eventId dup-id already landed with a different body"
    assert asyncio.run(asyncio.wait_for(deliver(), 60)) == [None, None, reason]
    with psycopg2.connect(pg_url) as check, check.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {schemas.landing}.events")
        assert cur.fetchone()[0] == 1
        cur.execute(f"SELECT reason, body, event_id, sync_run_id FROM {schemas.landing}.dead_letters")
        assert [(r, bytes(b), e, s) for r, b, e, s in cur.fetchall()] == [(reason, other, "dup-id", "sr-2")]
    check.close()


def test_replaying_a_dead_letter_the_store_would_not_take_reports_it_and_keeps_it(
    conn: Any, schemas: Schemas, pg_url: str
) -> None:
    """``dead-letters replay`` must not mark a dead letter replayed when ``land_events`` acknowledged its event
    without storing it (a closed run, a different body under a known id): the evidence would look handled."""
    land(conn, schemas, [record("sr-closed"), all_consumed("sr-closed")])
    age(conn, schemas, "sr-closed", 10)
    land_digested(conn, schemas, [record("sr-open", "taken-id")], ["int-a"])
    late = json.dumps(record("sr-closed")).encode()
    other = json.dumps(record("sr-open", "taken-id", info={"id": "other"})).encode()

    async def replay_both() -> dict[str | None, str | None]:
        db = await asyncpg.connect(pg_url)
        try:
            letters = [DeadLetter(body, {}, "kept for the test", "int-a") for body in (late, other)]
            await LandingStore(schemas).land(db, [], letters)
            ids = [row["id"] for row in await db.fetch(f"SELECT id FROM {schemas.landing}.dead_letters")]
            return {result.sync_run_id: result.error for result in await dead_letters.replay(db, schemas, ids)}
        finally:
            await db.close()

    errors = asyncio.run(asyncio.wait_for(replay_both(), 30))
    closed, conflict = errors["sr-closed"], errors["sr-open"]
    assert closed is not None
    assert "dedup window" in closed
    assert conflict == "event id taken-id already landed with a different body"
    assert one(conn, f"SELECT count(*) FROM {schemas.landing}.dead_letters WHERE replayed_at IS NULL")[0] == 2
    assert one(conn, f"SELECT count(*) FROM {schemas.landing}.events WHERE sync_run_id = 'sr-closed'")[0] == 2


# -- item 5: start-up never waits for the partitions lock -----------------------------------------------------
def test_start_up_does_not_wait_for_the_partitions_lock_and_a_later_pass_creates_them(
    conn: Any, schemas: Schemas, pg_url: str
) -> None:
    (last,) = one(
        conn,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass AND c.relname ~ '^events_[0-9]{8}$' ORDER BY c.relname DESC LIMIT 1",
        (f"{schemas.landing}.events",),
    )
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {schemas.landing}.{last}")
    holder = psycopg2.connect(pg_url)  # prune dropping a partition, say
    holder.autocommit = True
    with holder.cursor() as cur:
        # The key prune and ensure_event_partitions use: the schema as a quoted identifier.
        cur.execute(
            "SELECT pg_advisory_lock(hashtext('knit_provider.partitions:' || %s))", (quote_ident(schemas.landing),)
        )

    async def start_up() -> list[str]:
        receiver = await asyncpg.connect(pg_url)
        try:
            return await asyncio.wait_for(amigrate(receiver, schemas), 5)
        finally:
            await receiver.close()

    try:
        assert asyncio.run(start_up()) == []
        assert one(conn, "SELECT to_regclass(%s)", (f"{schemas.landing}.{last}",))[0] is None
    finally:
        holder.close()
    asyncio.run(start_up())
    assert one(conn, "SELECT to_regclass(%s)", (f"{schemas.landing}.{last}",))[0] == f"{schemas.landing}.{last}"


# -- the migration on a populated store ------------------------------------------------------------------------
def test_0005_on_a_populated_0004_store_keeps_every_row_and_its_ids(conn: Any) -> None:
    schemas = Schemas(landing="replay_v4")
    with conn, conn.cursor() as cur:
        store_at_version(cur, schemas, 4)
        landed_before = record("sr-1", "before")
        land_as_release(
            cur, schemas, 4, [landed_before, record("sr-1"), activation("int-a"), all_consumed("sr-1")], "int-a"
        )
    before = snapshot(conn, schemas)

    assert migrate(conn, schemas) == list(MIGRATIONS[4:])

    events, ids, runs, registry = snapshot(conn, schemas)
    assert (events, runs, registry) == (before[0], before[2], before[3])
    assert ids == [(*row, None) for row in before[1]], "the ids are kept, without a digest"
    # A retry of an id landed before the migration is silent, whatever its bytes (no digest to compare).
    assert land_digested(conn, schemas, [{**landed_before, "recordId": "app-1 "}], ["int-a"]) == (0, 0, 0, [])
    assert land(conn, schemas, [record("sr-2")]) == 1
