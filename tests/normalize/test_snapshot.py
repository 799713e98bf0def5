"""An initial sync is a snapshot: what it did not contain is deleted as of it, exactly, and only when safe."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import psycopg2
import pytest
from normalize_landing import Lander, app, application, in_every_order, rows

from knit_provider.normalize import normalize_runs
from knit_provider.settings import Schemas, quote_ident

START_MS = 1_700_000_000_000
HOUR_MS = 3_600_000


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def ledger(conn: Any, schemas: Schemas, run_id: str) -> dict[str, Any]:
    (row,) = rows(conn, schemas, "SELECT * FROM {t}.normalized_runs WHERE sync_run_id = %s", (run_id,))
    return row


def test_applications_absent_from_an_initial_sync_are_deleted_as_of_it_in_any_order(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1, snapshot = lander.run(), lander.initial()
    for app_id in ("a1", "a2", "gone"):
        r1.new(app_id)
    r1.complete(started_ms=START_MS)
    snapshot.new("a1")
    snapshot.new("a2")
    snapshot.complete(started_ms=START_MS + HOUR_MS)

    in_every_order(conn, schemas, [r1.run_id, snapshot.run_id])

    gone = app(conn, schemas, "gone")
    assert (gone["is_deleted"], gone["deleted_at"]) == (True, at(START_MS + HOUR_MS))
    assert (gone["snapshot_run_id"], gone["version_run_id"]) == (snapshot.run_id, r1.run_id)
    assert (gone["status"], gone["candidate_id"]) == ("ACTIVE", "c-gone")  # its last data is kept
    assert [app(conn, schemas, a)["is_deleted"] for a in ("a1", "a2")] == [False, False]
    entry = ledger(conn, schemas, snapshot.run_id)
    assert (entry["snapshot"], entry["snapshot_deleted"], entry["snapshot_note"]) == ("applied", 1, None)
    assert len(entry["models"]) == 6
    assert ledger(conn, schemas, r1.run_id)["snapshot"] is None  # a delta is no snapshot


def test_a_later_run_wins_over_an_earlier_snapshot_whatever_the_order(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1, snapshot, r3 = lander.run(), lander.initial(), lander.run()
    r1.new("back", stage="s1")
    r1.new("changed", stage="s1")
    r1.complete(started_ms=START_MS)
    snapshot.new("other")
    snapshot.complete(started_ms=START_MS + HOUR_MS)
    r3.new("back", stage="s2")  # re-added after the snapshot
    r3.modified("changed", stage="s3")
    r3.complete(started_ms=START_MS + 2 * HOUR_MS)

    # Includes r1, r3, then the snapshot: an earlier snapshot normalized last deletes nothing newer.
    in_every_order(conn, schemas, [r1.run_id, snapshot.run_id, r3.run_id])

    for app_id, stage in (("back", "s2"), ("changed", "s3")):
        row = app(conn, schemas, app_id)
        assert (row["is_deleted"], row["deleted_at"], row["snapshot_run_id"]) == (False, None, None)
        assert row["current_stage_id"] == stage


def test_a_deleted_application_keeps_its_own_deletion_and_the_earliest_snapshot_says_when(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1, r2, first, second = lander.run(), lander.run(), lander.initial(), lander.initial()
    r1.new("deleted")
    r1.new("absent")
    r1.complete(started_ms=START_MS)
    removal = r2.deleted("deleted")
    r2.complete(started_ms=START_MS + HOUR_MS)
    for run, hours in ((first, 2), (second, 3)):
        run.new("kept")
        run.complete(started_ms=START_MS + hours * HOUR_MS)

    in_every_order(conn, schemas, [r1.run_id, r2.run_id, first.run_id, second.run_id])

    deleted = app(conn, schemas, "deleted")
    assert (deleted["version_event_id"], deleted["deleted_at"], deleted["snapshot_run_id"]) == (
        removal,
        at(START_MS + HOUR_MS),
        None,
    )
    absent = app(conn, schemas, "absent")
    assert (absent["is_deleted"], absent["deleted_at"], absent["snapshot_run_id"]) == (
        True,
        at(START_MS + 2 * HOUR_MS),
        first.run_id,
    )


def land_dead_letter(conn: Any, schemas: Schemas, run_id: str) -> None:
    """Store an authentic body of the run that could not be landed, as the receiver does."""
    body = json.dumps({"eventType": "record.new", "syncRunId": run_id, "eventData": {}}).encode()
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {quote_ident(schemas.landing)}.land_dead_letters(%s, %s, %s::jsonb[], %s, %s, %s, %s, %s)",
            (["int-1"], ["no eventId"], ["{}"], [psycopg2.Binary(body)], [None], ["record.new"], ["sj-1"], [run_id]),
        )


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("incomplete", "not complete"),
        ("shortfall", "1 MISSING"),
        ("dead letter", "1 of its bodies are in"),
        ("no application id", "1 of its record events name no application"),
    ],
)
def test_a_snapshot_that_cannot_be_trusted_deletes_nothing_and_the_log_says_why(
    conn: Any, schemas: Schemas, lander: Lander, caplog: pytest.LogCaptureFixture, fault: str, says: str
) -> None:
    r1, snapshot = lander.run(), lander.initial()
    r1.new("a1")
    r1.new("absent")
    r1.complete()
    snapshot.new("a1")
    if fault == "dead letter":
        land_dead_letter(conn, schemas, snapshot.run_id)
    if fault == "no application id":
        snapshot.new("", data={"info": {"id": ""}}, record_id="")
    if fault != "incomplete":
        snapshot.complete(emitted=snapshot.emitted + (fault == "shortfall"))

    with caplog.at_level(logging.WARNING, logger="knit_provider.normalize.apply"):
        normalize_runs(conn, [r1.run_id, snapshot.run_id], schemas, force=True)

    assert app(conn, schemas, "absent")["is_deleted"] is False
    entry = ledger(conn, schemas, snapshot.run_id)
    assert entry["snapshot"] == "skipped"
    assert says in entry["snapshot_note"]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"Initial sync {snapshot.run_id}" in warning
    assert "snapshot step skipped" in warning
    assert says in warning


def test_a_skipped_snapshot_applies_once_it_completes(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1, snapshot = lander.run(), lander.initial()
    r1.new("absent")
    r1.complete()
    snapshot.new("a1")
    (partial,) = normalize_runs(conn, [r1.run_id, snapshot.run_id], schemas, force=True)[1:]
    assert (partial.snapshot, app(conn, schemas, "absent")["is_deleted"]) == ("skipped", False)

    snapshot.complete()
    (done,) = normalize_runs(conn, [snapshot.run_id], schemas)
    assert (done.snapshot, done.snapshot_deleted) == ("applied", 1)
    assert "snapshot: 1 applications it did not contain are deleted" in done.describe()
    assert app(conn, schemas, "absent")["snapshot_run_id"] == snapshot.run_id


def only_some_models(app_id: str) -> dict[str, Any]:
    data = application(app_id)
    return {"info": data["info"], "currentStage": data["currentStage"]}


def test_a_snapshot_of_fewer_models_than_earlier_runs_is_skipped_or_withdrawn_in_any_order(
    conn: Any, schemas: Schemas, lander: Lander, caplog: pytest.LogCaptureFixture
) -> None:
    r1, snapshot = lander.run(), lander.initial()
    r1.new("absent")
    r1.complete()
    snapshot.new("a1", data=only_some_models("a1"))
    snapshot.complete()

    # Snapshot first: it applies (nothing older yet), then r1 withdraws it.
    with caplog.at_level(logging.WARNING, logger="knit_provider.normalize.apply"):
        in_every_order(conn, schemas, [snapshot.run_id, r1.run_id])
    assert "withdrawn" in caplog.text
    assert "application_attachments" in caplog.text

    assert app(conn, schemas, "absent")["is_deleted"] is False
    entry = ledger(conn, schemas, snapshot.run_id)
    assert entry["snapshot"] == "skipped"
    assert entry["models"] == ["application_info", "application_stage"]
    assert "full_resync with every model" in entry["snapshot_note"]


def test_an_initial_sync_without_records_deletes_nothing(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1, empty = lander.run(), lander.initial()
    r1.new("a1")
    r1.complete()
    empty.complete()  # processed with emitted 0: complete, but it shows no models

    in_every_order(conn, schemas, [r1.run_id, empty.run_id])

    assert app(conn, schemas, "a1")["is_deleted"] is False
    assert ledger(conn, schemas, empty.run_id)["snapshot"] == "skipped"
