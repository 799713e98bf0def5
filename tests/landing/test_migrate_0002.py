"""Migration 0002 on a store populated by the first release (0001 only): nothing lost, dead letters
folded by body, and the completion rule back-filled exactly as ``land_events`` now decides it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from knit_landing_helpers import land_as_release, store_at_version

from knit_provider.landing.migrate import MIGRATIONS, migrate
from knit_provider.settings import Schemas

SCHEMAS = Schemas(landing="landing_v1")
L = "landing_v1"


@pytest.fixture(scope="module")
def conn(pg_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(pg_url)
    yield connection
    connection.close()


def _run_event(run: str, event_type: str, event_id: str, **data: Any) -> tuple[Any, ...]:
    envelope = {
        "eventId": event_id,
        "eventType": event_type,
        "syncRunId": run,
        "syncJobId": "sj",
        "syncType": "delta_sync",
        "syncDataType": "ats_applications",
        "eventData": data,
    }
    return (event_id, event_type, "delta_sync", "ats_applications", "sj", run, None, "int-1", json.dumps(envelope))


def _record(run: str, event_id: str) -> tuple[Any, ...]:
    envelope = {
        "eventId": event_id,
        "eventType": "record.new",
        "syncRunId": run,
        "recordId": event_id,
        "eventData": {"info": {"id": event_id}},
    }
    return (
        event_id,
        "record.new",
        "delta_sync",
        "ats_applications",
        "sj",
        run,
        event_id,
        "int-1",
        json.dumps(envelope),
    )


def _land_v1(cur: Any, *events: tuple[Any, ...]) -> None:
    """Each event as the first release's land_events left it, one arrival each."""
    for row in events:
        land_as_release(cur, SCHEMAS, 1, [json.loads(row[8])], row[7])


TRUNCATED = b'{"eventId": "ev-cut", "eventType": "record.new", "syncRunId": "r_ac", "eventData": {"in'
NO_EVENT_ID = b'{"eventType": "record.new", "syncJobId": "sj", "syncRunId": "r_ac", "eventData": {}}'
# Over the btree limit even compressed (hex of a hash chain compresses poorly), as a dead-lettered id may be.
LONG_RUN_ID = (
    b'{"eventId": "ev-long", "eventType": "x", "syncRunId": "'
    + b"".join(hashlib.sha256(bytes([i])).hexdigest().encode() for i in range(100))
    + b'"}'
)
NOT_JSON = b"\xff\xfe not json"


def test_0002_on_a_populated_0001_store_loses_nothing(conn: Any) -> None:
    with conn, conn.cursor() as cur:
        store_at_version(cur, SCHEMAS, 1)
        _land_v1(
            cur,
            _record("r_ac", "a1"),
            _record("r_ac", "a2"),
            _run_event("r_ac", "sync.events.processed", "p_ac", processed="2", emitted="2", complete=True),
            _run_event(
                "r_ac", "sync.events.allConsumed", "c_ac", processed="2", emitted="2", consumed="2", complete=True
            ),
            # A quiet run: its final report emitted nothing and no allConsumed followed.
            _run_event(
                "r_empty", "sync.events.processed", "p_empty_progress", processed="0", emitted="0", complete=False
            ),
            _run_event("r_empty", "sync.events.processed", "p_empty", processed="0", emitted="0", complete=True),
            # Both, the empty report first: complete as of that report, as land_events decides now.
            _run_event("r_both", "sync.events.processed", "p_both", processed="0", emitted="0", complete=True),
            _run_event(
                "r_both", "sync.events.allConsumed", "c_both", processed="0", emitted="0", consumed="0", complete=True
            ),
            # Not complete: a final report that emitted events, or an empty report that is not final.
            _record("r_open", "o1"),
            _run_event("r_open", "sync.events.processed", "p_open", processed="3", emitted="3", complete=True),
            _run_event("r_progress", "sync.events.processed", "p_progress", processed="0", emitted="0", complete=False),
        )
        # The first receiver stored one dead letter per attempt.
        for body in (TRUNCATED, NO_EVENT_ID, TRUNCATED, LONG_RUN_ID, TRUNCATED, NO_EVENT_ID, NOT_JSON):
            cur.execute(
                f"INSERT INTO {L}.dead_letters (integration_id, reason, headers, body) VALUES "
                "('int-1', 'not usable', '{\"x-knit-signature\": \"s\"}', %s)",
                (body,),
            )
        cur.execute(f"SELECT body, min(received_at), max(received_at) FROM {L}.dead_letters GROUP BY body")
        seen = {bytes(body): (first, last) for body, first, last in cur.fetchall()}
        cur.execute(f"SELECT event_id, seq, received_at FROM {L}.events ORDER BY seq")
        events_before = {event_id: (seq, at) for event_id, seq, at in cur.fetchall()}

    assert migrate(conn, SCHEMAS) == list(MIGRATIONS[1:])

    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT event_id, seq, received_at FROM {L}.events ORDER BY seq")
        assert {event_id: (seq, at) for event_id, seq, at in cur.fetchall()} == events_before
        cur.execute(
            f"SELECT body, attempts, received_at, last_received_at, event_id, event_type, sync_job_id, "
            f"sync_run_id, body_sha256 = sha256(body) FROM {L}.dead_letters"
        )
        letters = {bytes(row[0]): row[1:] for row in cur.fetchall()}
    assert set(letters) == set(seen), "one row per distinct body, every body kept byte for byte"
    assert {body: row[0] for body, row in letters.items()} == {
        TRUNCATED: 3,
        NO_EVENT_ID: 2,
        LONG_RUN_ID: 1,
        NOT_JSON: 1,
    }
    assert all(row[1:3] == seen[body] for body, row in letters.items()), "first and last seen span every attempt"
    assert all(row[7] for row in letters.values())
    assert letters[NO_EVENT_ID][3:7] == (None, "record.new", "sj", "r_ac")
    assert letters[LONG_RUN_ID][3:7] == ("ev-long", "x", None, None)  # too long for the run index: left out
    assert letters[TRUNCATED][3:7] == (None, None, None, None)  # not JSON: nothing read by the migration

    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT r.sync_run_id, r.completed_by, r.complete_seq, r.complete_at, e.received_at "
            f"FROM {L}.sync_runs r LEFT JOIN {L}.events e ON e.seq = r.complete_seq ORDER BY 1"
        )
        runs = {run: row for run, *row in cur.fetchall()}
    expected = {
        "r_ac": ("allConsumed", "c_ac"),
        "r_empty": ("processed", "p_empty"),
        "r_both": ("processed", "p_both"),
        "r_open": (None, None),
        "r_progress": (None, None),
    }
    for run, (completed_by, event_id) in expected.items():
        by, seq, complete_at, event_received_at = runs[run]
        assert (by, seq) == (completed_by, events_before[event_id][0] if event_id else None), run
        assert complete_at == event_received_at, run

    # The receiver of this release counts a retry of an old body as an attempt, and fills in the ids
    # it can read that the migration could not (a truncated body).
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {L}.land_dead_letters(%s, %s, %s::jsonb[], %s, %s, %s, %s, %s)",
            (["int-1"], ["not valid JSON"], ["{}"], [TRUNCATED], ["ev-cut"], ["record.new"], [None], ["r_ac"]),
        )
        assert cur.fetchone() == (0,)
        cur.execute(
            f"SELECT attempts, event_id, sync_run_id, received_at FROM {L}.dead_letters WHERE body = %s", (TRUNCATED,)
        )
        assert cur.fetchone() == (4, "ev-cut", "r_ac", seen[TRUNCATED][0])
