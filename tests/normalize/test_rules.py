"""Each normalization rule on hand-written multi-run histories, against real Postgres."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from normalize_landing import Lander, app, application, dump, in_every_order, rows

from knit_provider.normalize import normalize_runs
from knit_provider.settings import Schemas

START_MS = 1_700_000_000_000
START = datetime.fromtimestamp(START_MS / 1000, tz=timezone.utc)


def history(conn: Any, schemas: Schemas, app_id: str) -> list[tuple[Any, ...]]:
    return [
        (r["stage_id"], r["stage_name"], r["entered_at"], r["left_at"])
        for r in rows(
            conn,
            schemas,
            "SELECT * FROM {t}.ats_application_stage_history WHERE application_id = %s ORDER BY position",
            (app_id,),
        )
    ]


def test_new_then_modified_newer_run_wins_in_any_order(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1, r2 = lander.run(), lander.run()
    r1.new("a1", stage="s1")
    r1.new("a2", stage="s1")
    r1.complete(started_ms=START_MS)
    modified = r2.modified("a1", stage="s2", status="REJECTED")
    r2.complete(started_ms=START_MS + 3_600_000)

    in_every_order(conn, schemas, [r1.run_id, r2.run_id])

    a1 = app(conn, schemas, "a1")
    assert (a1["status"], a1["current_stage_id"], a1["current_stage_name"]) == ("REJECTED", "s2", "Stage s2")
    assert (a1["version_run_id"], a1["version_event_id"], a1["data_event_id"]) == (r2.run_id, modified, modified)
    assert not a1["is_deleted"]
    assert app(conn, schemas, "a2")["version_run_id"] == r1.run_id
    assert a1["applied_at"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert a1["models"]["info"]["status"] == "REJECTED"


def test_later_arrival_wins_within_a_run(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1 = lander.run()
    r1.new("a1", stage="s1")
    last = r1.modified("a1", stage="s2")
    r1.complete()
    normalize_runs(conn, [r1.run_id], schemas)
    assert (app(conn, schemas, "a1")["current_stage_id"], app(conn, schemas, "a1")["version_event_id"]) == ("s2", last)


def test_late_event_of_an_older_run_never_beats_a_newer_run(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1, r2 = lander.run(), lander.run()
    r1.new("a1", stage="s1", updated_at="2024-01-01T00:00:00Z")
    r2.modified("a1", stage="s3", updated_at="2024-01-03T00:00:00Z")
    # Landed after r2's event (higher seq), but it belongs to r1: its version is lower.
    r1.modified("a1", stage="s2", updated_at="2024-01-02T00:00:00Z")
    r2.complete()
    r1.complete()

    in_every_order(conn, schemas, [r1.run_id, r2.run_id])

    assert app(conn, schemas, "a1")["current_stage_id"] == "s3"
    day = [datetime(2024, 1, d, tzinfo=timezone.utc) for d in (1, 2, 3)]
    assert history(conn, schemas, "a1") == [
        ("s1", "Stage s1", day[0], day[1]),
        ("s2", "Stage s2", day[1], day[2]),
        ("s3", "Stage s3", day[2], None),
    ]


def test_deleted_soft_deletes_keeps_data_and_a_later_change_revives(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1, r2, r3 = lander.run(), lander.run(), lander.run()
    data = application("a1", stage="s1")
    data["interviews"] = [{"id": "iv1", "subject": "Intro", "scheduledStart": "2024-02-01T10:00:00Z"}]
    created = r1.new("a1", data=data)
    r1.complete(started_ms=START_MS)
    deleted = r2.deleted("a1")
    r2.complete(started_ms=START_MS + 1000)

    in_every_order(conn, schemas, [r1.run_id, r2.run_id])
    a1 = app(conn, schemas, "a1")
    assert a1["is_deleted"]
    assert a1["deleted_at"] == datetime.fromtimestamp((START_MS + 1000) / 1000, tz=timezone.utc)
    assert (a1["version_event_id"], a1["data_event_id"]) == (deleted, created)
    assert (a1["status"], a1["current_stage_id"]) == ("ACTIVE", "s1")
    assert len(rows(conn, schemas, "SELECT * FROM {t}.ats_application_interviews")) == 1

    r3.modified("a1", stage="s2")
    r3.complete()
    final = in_every_order(conn, schemas, [r3.run_id, r2.run_id, r1.run_id])
    a1 = app(conn, schemas, "a1")
    assert (a1["is_deleted"], a1["deleted_at"], a1["current_stage_id"]) == (False, None, "s2")
    assert final["ats_application_interviews"] == []


def test_an_application_only_ever_deleted_keeps_the_ids_it_carried(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1 = lander.run()
    r1.deleted("gone", data={"applicationId": "gone", "candidateId": "c9", "jobId": "j9"})
    r1.complete()
    normalize_runs(conn, [r1.run_id], schemas)
    gone = app(conn, schemas, "gone")
    assert (gone["is_deleted"], gone["candidate_id"], gone["job_id"]) == (True, "c9", "j9")
    assert (gone["data_event_id"], gone["models"], gone["status"]) == (None, None, None)


def test_duplicates_land_once_and_repeated_stages_collapse(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1 = lander.run()
    first = r1.new("a1", stage="s1", updated_at="2024-01-01T00:00:00Z")
    r1.new("a1", stage="s1", updated_at="2024-01-01T00:00:00Z", event_id=first)  # redelivered: same eventId
    r1.modified("a1", stage="s1", updated_at="2024-01-05T00:00:00Z")  # same stage, later
    r1.modified("a1", stage="s2", updated_at="2024-01-09T00:00:00Z")
    r1.complete()
    (result,) = normalize_runs(conn, [r1.run_id], schemas)
    assert (result.record_events, result.applications) == (3, 1)
    assert len(rows(conn, schemas, "SELECT * FROM {t}.ats_application_versions")) == 3
    assert history(conn, schemas, "a1") == [
        ("s1", "Stage s1", datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 9, tzinfo=timezone.utc)),
        ("s2", "Stage s2", datetime(2024, 1, 9, tzinfo=timezone.utc), None),
    ]


def test_stage_name_from_name_or_text_and_entered_at_falls_back_to_the_run_start(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1 = lander.run()
    r1.new("by-text", stage="s7", stage_key="text")
    both = application("both", stage=None)
    both["currentStage"] = {"id": "s8", "name": "Onsite", "text": "ignored"}
    r1.new("both", data=both)
    r1.complete(started_ms=START_MS)
    normalize_runs(conn, [r1.run_id], schemas)
    assert app(conn, schemas, "by-text")["current_stage_name"] == "Stage s7"
    assert app(conn, schemas, "both")["current_stage_name"] == "Onsite"
    assert history(conn, schemas, "by-text") == [("s7", "Stage s7", START, None)]


def test_children_are_replaced_whole_when_the_application_wins(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1, r2 = lander.run(), lander.run()
    old = application("a1")
    old["interviews"] = [
        {
            "id": "iv1",
            "subject": "Intro",
            "scheduledStart": "2024-02-01T10:00:00Z",
            "scheduledEnd": "2024-02-01T11:00:00Z",
            "status": "DONE",
            "interviewers": [{"id": "u"}],
        },
        {"id": "iv2", "subject": "Tech"},
    ]
    old["attachments"] = [{"type": "RESUME", "name": "cv.pdf", "link": "https://x/cv.pdf"}]
    old["offers"] = [{"id": "of1", "status": "SENT", "createdAt": "2024-03-01T00:00:00Z", "startDate": "2024-04-01"}]
    r1.new("a1", data=old)
    r1.complete()
    new = application("a1")
    new["interviews"] = [{"id": "iv3", "subject": "Final", "scheduledStart": "1706788800000"}]
    r2.modified("a1", data=new)
    r2.complete()

    in_every_order(conn, schemas, [r1.run_id, r2.run_id])

    interviews = rows(conn, schemas, "SELECT * FROM {t}.ats_application_interviews")
    assert [(i["position"], i["interview_id"], i["subject"]) for i in interviews] == [(1, "iv3", "Final")]
    assert interviews[0]["scheduled_start"] == datetime(2024, 2, 1, 12, 0, tzinfo=timezone.utc)  # epoch ms
    assert rows(conn, schemas, "SELECT * FROM {t}.ats_application_attachments") == []
    assert rows(conn, schemas, "SELECT * FROM {t}.ats_application_offers") == []

    normalize_runs(conn, [r1.run_id], Schemas(landing=schemas.landing, target=schemas.target + "_only1"))
    only1 = Schemas(landing=schemas.landing, target=schemas.target + "_only1")
    offers = rows(conn, only1, "SELECT * FROM {t}.ats_application_offers")
    assert [(o["offer_id"], o["status"], o["start_date"]) for o in offers] == [
        ("of1", "SENT", datetime(2024, 4, 1, tzinfo=timezone.utc))
    ]
    # What Knit sent is kept whole beside the typed columns (our guess at the offer's fields).
    assert [o["raw"] for o in offers] == old["offers"]
    (attachment,) = rows(conn, only1, "SELECT * FROM {t}.ats_application_attachments")
    assert (attachment["expiring_link"], attachment["raw"]) == ("https://x/cv.pdf", old["attachments"][0])
    assert "link" not in attachment  # named so nobody takes Knit's signed URL for a permanent one
    assert [
        i["interview_id"] for i in rows(conn, only1, "SELECT * FROM {t}.ats_application_interviews ORDER BY position")
    ] == ["iv1", "iv2"]


def test_a_candidate_comes_from_its_highest_version_across_applications(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1, r2 = lander.run(), lander.run()
    old = application("a1", candidate="c1")
    old["info"]["candidate"].update(
        firstName="Old", emails=[{"type": "WORK", "email": "w@x"}, {"type": "primary", "email": "p@x"}]
    )
    r1.new("a1", data=old)
    r1.complete()
    new = application("a2", candidate="c1")
    new["info"]["candidate"]["firstName"] = "New"
    r2.new("a2", data=new)
    r2.complete()

    for order in ([r1.run_id, r2.run_id], [r2.run_id, r1.run_id]):
        target = Schemas(landing=schemas.landing, target=f"{schemas.target}_{order[0].replace('-', '_')}")
        normalize_runs(conn, order, target)
        (c1,) = rows(conn, target, "SELECT * FROM {t}.ats_candidates")
        assert (c1["candidate_id"], c1["first_name"], c1["application_id"]) == ("c1", "New", "a2")

    normalize_runs(conn, [r1.run_id], schemas)
    (c1,) = rows(conn, schemas, "SELECT * FROM {t}.ats_candidates")
    assert c1["email"] == "p@x"  # the one typed PRIMARY, not the first


def test_wrong_types_leave_fields_null_are_counted_and_never_fail_the_run(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1 = lander.run()
    bad_lists = application("lists")
    bad_lists["interviews"] = "none"
    bad_lists["info"]["candidate"]["emails"] = "x@example.com"
    bad_lists["offers"] = [1, {"id": "of1"}]
    r1.new("lists", data=bad_lists)
    bad_times = application("times", updated_at="2024-02-30T00:00:00Z", appliedAt="yesterday")
    r1.new("times", data=bad_times)
    bad_scalars = application("scalars", status={"code": 1}, jobId=["j"])
    bad_scalars["currentStage"] = "Onsite"
    r1.new("scalars", data=bad_scalars)
    r1.new("fine", extraField={"anything": [1, 2]}, creditedTo=None)  # extra and null fields are fine
    sparse = {"info": {"id": "sparse"}}  # most models missing: fine
    r1.new("sparse", data=sparse)
    r1.record("record.modified", "nodata", data="not an object")
    r1.complete()

    (result,) = normalize_runs(conn, [r1.run_id], schemas)

    assert result.type_error_events == 4
    assert result.applications == 6
    lists = app(conn, schemas, "lists")
    assert lists["models"]["interviews"] == "none"  # the raw model is kept as sent
    assert rows(conn, schemas, "SELECT * FROM {t}.ats_application_interviews") == []
    assert [o["offer_id"] for o in rows(conn, schemas, "SELECT * FROM {t}.ats_application_offers")] == ["of1"]
    (cand,) = rows(conn, schemas, "SELECT * FROM {t}.ats_candidates WHERE candidate_id = 'c-lists'")
    assert (cand["emails"], cand["email"]) == (None, None)
    times = app(conn, schemas, "times")
    assert (times["updated_at"], times["applied_at"]) == (None, None)
    scalars = app(conn, schemas, "scalars")
    assert (scalars["status"], scalars["job_id"], scalars["current_stage_id"]) == (None, None, None)
    assert app(conn, schemas, "fine")["status"] == "ACTIVE"
    assert app(conn, schemas, "sparse")["candidate_id"] is None
    assert app(conn, schemas, "nodata")["models"] is None


def test_renormalizing_changes_nothing_and_is_recorded(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1, r2 = lander.run(), lander.run()
    r1.new("a1", stage="s1")
    r1.complete()
    r2.modified("a1", stage="s2")
    r2.deleted("a2")
    r2.complete()
    normalize_runs(conn, [r1.run_id, r2.run_id], schemas)
    before = dump(conn, schemas)
    again = normalize_runs(conn, [r2.run_id, r1.run_id, r2.run_id], schemas)
    assert dump(conn, schemas) == before
    assert [r.applications_changed for r in again] == [0, 0, 0]
    ledger = rows(conn, schemas, "SELECT * FROM {t}.normalized_runs ORDER BY first_seq")
    assert [(r["sync_run_id"], r["times_normalized"]) for r in ledger] == [(r1.run_id, 2), (r2.run_id, 3)]
    marked = rows(conn, schemas, "SELECT count(*) AS n FROM {l}.sync_runs WHERE normalized_at IS NOT NULL")
    assert marked[0]["n"] == 2
