"""``land_events``: the only write path of the landing store (duplicates, sync_runs, NOTIFY)."""

from __future__ import annotations

import itertools
import json
import select
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from knit_provider.settings import NOTIFY_CHANNEL

_seq = itertools.count()


def _event(event_type: str = "record.new", run: str = "sr_1", job: str = "sj_1", **data: Any) -> dict[str, Any]:
    return {
        "eventId": f"e{next(_seq)}",
        "eventType": event_type,
        "eventData": data,
        "syncType": "delta_sync",
        "syncDataType": "ats_applications",
        "syncJobId": job,
        "syncRunId": run,
        "recordId": "r1",
    }


def _land(
    conn: Any, events: list[dict[str, Any]], integration: str = "int-1", execution_ids: list[str | None] | None = None
) -> int:
    """Land through ``land_events``: nine arrays as before 0002, ten when execution ids are given."""

    def column(key: str) -> list[Any]:
        return [e.get(key) for e in events]

    args = [
        column("eventId"),
        column("eventType"),
        column("syncType"),
        column("syncDataType"),
        column("syncJobId"),
        column("syncRunId"),
        column("recordId"),
        [integration] * len(events),
        [json.dumps(e) for e in events],
    ]
    tenth = ""
    if execution_ids is not None:
        args.append(execution_ids)
        tenth = ", %s"
    with conn.cursor() as cur:
        cur.execute(f"SELECT knit_landing.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[]{tenth})", args)
        landed = cur.fetchone()[0]
    conn.commit()
    return int(landed)


def _run(conn: Any, run: str) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM knit_landing.sync_runs WHERE sync_run_id = %s", (run,))
        row = cur.fetchone()
        assert row is not None, f"no sync_runs row for {run}"
        return dict(zip([d[0] for d in cur.description], row, strict=True))


@pytest.fixture
def conn(landing_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(landing_url)
    yield connection
    connection.close()


def test_duplicates_in_and_across_batches_land_once_and_count_once(conn: Any) -> None:
    first, second = _event(run="sr_dup"), _event(run="sr_dup")
    assert _land(conn, [first, first, second]) == 2
    assert _land(conn, [second, _event(run="sr_dup")]) == 1
    run = _run(conn, "sr_dup")
    assert run["record_events"] == 3
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM knit_landing.events WHERE sync_run_id = 'sr_dup'")
        assert cur.fetchone()[0] == 3


def test_sync_runs_tracks_first_seq_job_and_integration(conn: Any) -> None:
    events = [_event(run="sr_meta", job="sj_meta") for _ in range(3)]
    _land(conn, events, integration="int-meta")
    with conn.cursor() as cur:
        cur.execute("SELECT min(seq) FROM knit_landing.events WHERE sync_run_id = 'sr_meta'")
        first_seq = cur.fetchone()[0]
    run = _run(conn, "sr_meta")
    assert (run["sync_job_id"], run["integration_id"], run["sync_data_type"], run["sync_type"]) == (
        "sj_meta",
        "int-meta",
        "ats_applications",
        "delta_sync",
    )
    assert run["first_seq"] == first_seq
    assert run["first_received_at"] <= run["last_received_at"]
    assert run["all_consumed_at"] is None


def test_counts_come_from_the_most_final_report(conn: Any) -> None:
    run = "sr_counts"
    _land(
        conn,
        [
            _event(
                "sync.events.processed",
                run,
                processed="10",
                emitted="4",
                startedAt="1676292064383",
                processedAt="1676292068616",
                complete=False,
            )
        ],
    )
    assert (_run(conn, run)["processed_count"], _run(conn, run)["counts_rank"]) == (10, 1)
    _land(
        conn,
        [
            _event(
                "sync.events.allConsumed",
                run,
                processed="12",
                emitted="5",
                consumed="5",
                completedAt="1676292070000",
                complete=True,
            )
        ],
    )
    # A late, older processed report must not overwrite allConsumed's figures.
    _land(conn, [_event("sync.events.processed", run, processed="1", emitted="1", complete=True)])
    row = _run(conn, run)
    assert (row["processed_count"], row["emitted_count"], row["consumed_count"], row["counts_rank"]) == (12, 5, 5, 3)
    assert row["all_consumed_at"] is not None
    assert row["all_consumed_seq"] is not None
    assert row["started_at"].year == 2023
    assert row["completed_at"] is not None
    assert row["record_events"] == 0


def test_malformed_counts_and_times_become_null_not_errors(conn: Any) -> None:
    run = "sr_bad_counts"
    assert (
        _land(
            conn,
            [
                _event(
                    "sync.events.allConsumed",
                    run,
                    processed="many",
                    emitted=None,
                    consumed="1e99",
                    startedAt="yesterday",
                    completedAt=-5,
                )
            ],
        )
        == 1
    )
    row = _run(conn, run)
    assert (row["processed_count"], row["emitted_count"], row["consumed_count"]) == (None, None, None)
    assert (row["started_at"], row["completed_at"]) == (None, None)
    assert row["all_consumed_at"] is not None


def test_event_data_that_is_not_an_object_is_stored(conn: Any) -> None:
    event = _event("sync.events.processed", "sr_scalar")
    event["eventData"] = "oops"
    assert _land(conn, [event]) == 1
    assert _run(conn, "sr_scalar")["counts_rank"] == 0


def test_events_without_a_run_land_without_sync_runs_row(conn: Any) -> None:
    event = _event("app.integration.activate")
    event["syncRunId"] = None
    assert _land(conn, [event]) == 1


def test_notify_per_landed_run_event_only(conn: Any, landing_url: str) -> None:
    listener = psycopg2.connect(landing_url)
    listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    try:
        with listener.cursor() as cur:
            cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
        processed = _event("sync.events.processed", "sr_notify", "sj_notify", processed="1", complete=True)
        consumed = _event("sync.events.allConsumed", "sr_notify", "sj_notify", consumed="1")
        _land(conn, [_event(run="sr_notify"), processed, consumed])
        _land(conn, [consumed])  # a duplicate run event is not announced again
        payloads: list[dict[str, Any]] = []
        while len(payloads) < 2:
            if select.select([listener], [], [], 10) == ([], [], []):
                break
            listener.poll()
            payloads += [json.loads(n.payload) for n in listener.notifies]
            listener.notifies.clear()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT event_type, seq FROM knit_landing.events WHERE sync_run_id = 'sr_notify' "
                "AND event_type LIKE 'sync.events.%' ORDER BY seq"
            )
            expected = [
                {"sync_job_id": "sj_notify", "sync_run_id": "sr_notify", "event_type": t, "seq": s}
                for t, s in cur.fetchall()
            ]
        listener.poll()
        assert payloads == expected
        assert not listener.notifies
    finally:
        listener.close()


def test_nothing_is_announced_or_counted_when_the_transaction_rolls_back(conn: Any) -> None:
    with conn.cursor() as cur:
        event = _event("sync.events.allConsumed", "sr_rollback")
        cur.execute(
            "SELECT knit_landing.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[])",
            (
                [event["eventId"]],
                [event["eventType"]],
                [None],
                [None],
                ["sj"],
                ["sr_rollback"],
                [None],
                [None],
                [json.dumps(event)],
            ),
        )
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM knit_landing.sync_runs WHERE sync_run_id = 'sr_rollback'")
        assert cur.fetchone()[0] == 0


def _complete(conn: Any, run: str) -> tuple[Any, Any, Any]:
    row = _run(conn, run)
    return row["complete_at"], row["complete_seq"], row["completed_by"]


def _seq_of(conn: Any, event: dict[str, Any]) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT seq FROM knit_landing.events WHERE event_id = %s", (event["eventId"],))
        return int(cur.fetchone()[0])


def test_a_final_processed_report_that_emitted_nothing_completes_the_run(conn: Any) -> None:
    run = "sr_empty"
    # Progress reports, even one saying emitted 0, do not complete a run: only the final one does.
    _land(conn, [_event("sync.events.processed", run, processed="0", emitted="0", complete=False)])
    assert _complete(conn, run) == (None, None, None)
    final = _event("sync.events.processed", run, processed="0", emitted="0", complete=True)
    _land(conn, [final])
    complete_at, complete_seq, completed_by = _complete(conn, run)
    assert (complete_seq, completed_by) == (_seq_of(conn, final), "processed")
    assert complete_at is not None
    assert _run(conn, run)["all_consumed_at"] is None
    # A late allConsumed is recorded as a fact but does not move the completion.
    _land(conn, [_event("sync.events.allConsumed", run, processed="0", emitted="0", consumed="0")])
    assert _complete(conn, run) == (complete_at, complete_seq, completed_by)
    assert _run(conn, run)["all_consumed_at"] is not None


def test_a_final_report_with_events_to_consume_waits_for_all_consumed(conn: Any) -> None:
    run = "sr_nonempty"
    _land(conn, [_event(run=run), _event("sync.events.processed", run, processed="1", emitted="1", complete=True)])
    assert _complete(conn, run) == (None, None, None)
    consumed = _event("sync.events.allConsumed", run, processed="1", emitted="1", consumed="1")
    _land(conn, [consumed])
    assert _complete(conn, run)[1:] == (_seq_of(conn, consumed), "allConsumed")


def test_the_first_completion_in_one_batch_wins(conn: Any) -> None:
    run = "sr_both"
    consumed = _event("sync.events.allConsumed", run, consumed="0")
    empty = _event("sync.events.processed", run, processed="0", emitted="0", complete=True)
    _land(conn, [consumed, empty])
    assert _complete(conn, run)[1:] == (_seq_of(conn, consumed), "allConsumed")


def test_empty_ids_are_stored_as_absent(conn: Any) -> None:
    event = _event("record.deleted", run="sr_blank")
    event.update(recordId="", syncJobId="", syncType="")
    blank_run = _event(run="")
    assert _land(conn, [event, blank_run], integration="") == 2
    with conn.cursor() as cur:
        cur.execute(
            "SELECT record_id, sync_job_id, sync_type, integration_id, sync_run_id FROM knit_landing.events "
            "WHERE event_id = ANY(%s) ORDER BY seq",
            ([event["eventId"], blank_run["eventId"]],),
        )
        assert cur.fetchall() == [(None, None, None, None, "sr_blank"), ("r1", "sj_1", "delta_sync", None, None)]
        cur.execute("SELECT count(*) FROM knit_landing.sync_runs WHERE sync_run_id = ''")
        assert cur.fetchone()[0] == 0


def test_execution_ids_are_kept_with_each_event_and_optional(conn: Any) -> None:
    with_id, without_id, blank = _event(run="sr_exec"), _event(run="sr_exec"), _event(run="sr_exec")
    _land(conn, [with_id, without_id, blank], execution_ids=["exec-1", None, ""])
    legacy = _event(run="sr_exec")
    _land(conn, [legacy])  # the nine-argument call of older receivers still lands
    with conn.cursor() as cur:
        cur.execute("SELECT event_id, execution_id FROM knit_landing.events WHERE sync_run_id = 'sr_exec'")
        assert dict(cur.fetchall()) == {
            with_id["eventId"]: "exec-1",
            without_id["eventId"]: None,
            blank["eventId"]: None,
            legacy["eventId"]: None,
        }
