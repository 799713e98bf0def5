"""'' from Knit is an absent id: deletions keep the ids an application had, and no key is ever ''."""

from __future__ import annotations

from typing import Any

from normalize_landing import Lander, app, application, in_every_order, rows

from knit_provider.normalize import normalize_runs
from knit_provider.settings import Schemas

# What Knit's page shows a record.deleted carrying.
EMPTY_IDS = {"applicationId": "", "candidateId": "", "jobId": ""}


def test_a_delete_with_empty_ids_keeps_the_ids_the_application_had(conn: Any, schemas: Schemas, lander: Lander) -> None:
    r1, r2 = lander.run(), lander.run()
    created = r1.new("a1", candidate="c7", jobId="j7")
    r1.complete()
    deleted = r2.deleted("a1", data=EMPTY_IDS)
    r2.complete()

    in_every_order(conn, schemas, [r1.run_id, r2.run_id])

    a1 = app(conn, schemas, "a1")
    assert (a1["is_deleted"], a1["version_event_id"], a1["data_event_id"]) == (True, deleted, created)
    assert (a1["candidate_id"], a1["job_id"]) == ("c7", "j7")


def test_an_application_only_seen_deleted_with_empty_ids_has_null_ids(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1 = lander.run()
    r1.deleted("gone", data=EMPTY_IDS)
    # recordId empty: the application id comes from eventData.
    r1.deleted("by-data", data={"applicationId": "by-data", "candidateId": "", "jobId": ""}, record_id="")
    r1.complete()

    (result,) = normalize_runs(conn, [r1.run_id], schemas)

    assert (result.applications, result.events_without_application_id, result.type_error_events) == (2, 0, 0)
    for app_id in ("gone", "by-data"):
        row = app(conn, schemas, app_id)
        assert (row["is_deleted"], row["candidate_id"], row["job_id"]) == (True, None, None)


def test_a_later_delete_with_empty_ids_never_erases_ids_an_earlier_delete_carried(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1, r2, r3 = lander.run(), lander.run(), lander.run()
    r1.deleted("gone", data={"applicationId": "gone", "candidateId": "c1", "jobId": ""})
    r1.complete()
    r2.deleted("gone", data={"applicationId": "gone", "candidateId": "c2", "jobId": "j2"})
    r2.complete()
    last = r3.deleted("gone", data=EMPTY_IDS)
    r3.complete()

    in_every_order(conn, schemas, [r1.run_id, r2.run_id, r3.run_id])

    gone = app(conn, schemas, "gone")
    # Each id from the highest deletion that carries one.
    assert (gone["version_event_id"], gone["candidate_id"], gone["job_id"]) == (last, "c2", "j2")


def test_empty_ids_in_application_data_are_null_not_keys_and_not_type_errors(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1 = lander.run()
    data = application("a1", jobId="", stage=None)
    data["info"]["candidate"]["id"] = ""
    data["info"]["owner"]["id"] = ""
    data["currentStage"] = {"id": "", "name": "Screen"}
    data["interviews"] = [{"id": "", "subject": "Intro"}]
    data["offers"] = [{"id": "", "status": "SENT"}]
    r1.new("a1", data=data, record_id="")  # the id from info.id
    nothing = {"info": {"id": ""}}
    r1.new("", data=nothing, record_id="")  # no id anywhere: ignored, counted
    r1.complete()

    (result,) = normalize_runs(conn, [r1.run_id], schemas)

    assert (result.applications, result.events_without_application_id, result.type_error_events) == (1, 1, 0)
    a1 = app(conn, schemas, "a1")
    assert (a1["candidate_id"], a1["job_id"], a1["owner_id"], a1["current_stage_id"]) == (None, None, None, None)
    assert a1["current_stage_name"] == "Screen"
    assert rows(conn, schemas, "SELECT * FROM {t}.ats_candidates") == []
    (interview,) = rows(conn, schemas, "SELECT * FROM {t}.ats_application_interviews")
    (offer,) = rows(conn, schemas, "SELECT * FROM {t}.ats_application_offers")
    assert (interview["interview_id"], offer["offer_id"]) == (None, None)
    (stage,) = rows(conn, schemas, "SELECT * FROM {t}.ats_application_stage_history")
    assert (stage["stage_id"], stage["stage_name"]) == (None, "Screen")
    empty = rows(conn, schemas, "SELECT application_id FROM {t}.ats_application_versions WHERE application_id = ''")
    assert empty == []
