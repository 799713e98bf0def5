"""Knit's documented application shapes and our first guesses normalize to the same columns.

Knit's "Application Data Models" page documents a candidate location as a string, a stage as
``{id, text}`` (one page nests it as ``{"currentStage": {...}}``), interviews with a status, a
stage and a ``createdBy`` user, ``customFields`` beside the models, and no job title. The simulator
first sent a location object, a stage ``{id, name}`` and a ``jobTitle``; the guessed bodies below
also give interviews a ``{id, name}`` stage and a ``creator`` (the other key accepted for
``createdBy``). The bodies are written by hand in both forms.
"""

from __future__ import annotations

from typing import Any

from normalize_landing import DATA_TABLES, FEED_COLUMNS, Lander, app, dump, rows

from knit_provider.normalize import normalize_runs
from knit_provider.settings import Schemas

# Where the two shapes legitimately differ: bookkeeping (ids and places of the events, which
# integration), and the values kept exactly as sent.
_NOT_COMPARED = {
    "integration_id",
    "sync_run_id",
    "event_id",
    "first_seq",
    "seq",
    "version_run_id",
    "version_first_seq",
    "version_seq",
    "version_event_id",
    "data_run_id",
    "data_first_seq",
    "data_seq",
    "data_event_id",
    "models",
    "custom_fields",
    "raw",
    # The change feed's: each integration's runs are normalized at their own time.
    *FEED_COLUMNS,
}
_SENT_AS_IS = {"ats_candidates": {"location"}}  # the candidate's location as sent (its text is compared)

USERS = {
    "u1": {"id": "u1", "email": "owner@example.com", "employeeId": "EMP-1"},
    "u2": {"id": "u2", "email": "recruiter@example.com", "employeeId": None},
}
# (city, state, country, zipCode) and the documented string for it.
PLACES = {
    "austin": (("Austin", "TX", "US", "78701"), "Austin, TX, US"),
    "london": (("London", None, "GB", "EC1A 1BB"), "London, GB"),
    "remote": (("Remote", None, None, None), "Remote"),
}


def _stage(stage_id: str, name: str, *, documented: bool, nested: bool = False) -> dict[str, Any]:
    stage = {"id": stage_id, "text" if documented else "name": name}
    return {"currentStage": stage} if nested else stage


def _location(place: str | None, *, documented: bool) -> Any:
    if place is None:
        return None
    (city, state, country, zip_code), text = PLACES[place]
    return text if documented else {"city": city, "state": state, "country": country, "zipCode": zip_code}


def event_data(
    app_id: str,
    *,
    documented: bool,
    stage: tuple[str, str] = ("st-1", "Applied"),
    place: str | None = "austin",
    interviews: int = 1,
    nested: bool = False,
    updated_at: str = "2024-03-01T00:00:00Z",
) -> dict[str, Any]:
    """One application's ``eventData`` in Knit's documented shape, or in the simulator's first guess."""
    info: dict[str, Any] = {
        "id": app_id,
        "status": "ACTIVE",
        "candidate": {
            "id": f"c-{app_id}",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "phones": [{"type": "SKYPE", "phoneNumber": "ada.l"}, {"type": "WORK", "phoneNumber": "+15125550100"}],
            "emails": [
                {"type": "NOT_SPECIFIED", "email": f"{app_id}@example.com"},
                {"type": "WORK", "email": f"{app_id}@work.example.com"},
            ],
            "links": [f"https://example.com/{app_id}"],
            "location": _location(place, documented=documented),
        },
        "origin": "REFERRAL",
        "appliedAt": "2024-02-01T09:00:00Z",
        "updatedAt": updated_at,
        "jobId": "job-1",
        "owner": USERS["u1"],
        "creditedTo": USERS["u2"],
    }
    if not documented:
        info["jobTitle"] = "Data Engineer"
    data: dict[str, Any] = {
        "info": info,
        "currentStage": _stage(*stage, documented=documented, nested=nested),
        "interviews": [
            {
                "id": f"{app_id}-iv{n}",
                "subject": "Technical",
                "scheduledStart": "2024-03-02T10:00:00Z",
                "scheduledEnd": "2024-03-02T11:00:00Z",
                "status": "AWAITING_FEEDBACK" if n == 1 else "SCHEDULED",
                "interviewers": [USERS["u2"]],
                "location": "Zoom",
                "stage": _stage("st-2", "Onsite", documented=documented, nested=nested),
                "createdBy" if documented else "creator": USERS["u2"],
            }
            for n in range(1, interviews + 1)
        ],
        "rejection": None,
        "offers": [],
        "attachments": [],
    }
    if documented:
        data["customFields"] = {"source_detail": "meetup", "score": 4}
    return data


def land_history(lander: Lander, integration_id: str, *, documented: bool) -> list[str]:
    """Two runs of three applications: created, then moved on (one of them nested, one soft-deleted)."""
    first, second = lander.run(integration_id=integration_id), lander.run(integration_id=integration_id)
    first.new("a1", data=event_data("a1", documented=documented))
    first.new("a2", data=event_data("a2", documented=documented, place="london", nested=True, interviews=2))
    first.new("a3", data=event_data("a3", documented=documented, place=None, interviews=0))
    first.complete()
    moved = event_data(
        "a1", documented=documented, stage=("st-2", "Onsite"), place="remote", updated_at="2024-03-05T00:00:00Z"
    )
    second.modified("a1", data=moved)
    second.modified(
        "a2",
        data=event_data(
            "a2",
            documented=documented,
            stage=("st-3", "Offer"),
            place="london",
            nested=True,
            updated_at="2024-03-06T00:00:00Z",
        ),
    )
    second.deleted("a3")
    second.complete()
    return [first.run_id, second.run_id]


def compared(conn: Any, schemas: Schemas, integration_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each data table's rows of one integration, without the columns where the shapes may differ."""
    out = {}
    for table, order in DATA_TABLES.items():
        found = rows(
            conn,
            schemas,
            f"SELECT * FROM {{t}}.{table} WHERE integration_id = %s ORDER BY {order}",
            (integration_id,),
        )
        skip = _NOT_COMPARED | _SENT_AS_IS.get(table, set())
        out[table] = [{k: v for k, v in row.items() if k not in skip} for row in found]
    return out


def test_documented_and_guessed_shapes_give_the_same_columns_row_by_row(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    runs = land_history(lander, "int-doc", documented=True) + land_history(lander, "int-guess", documented=False)

    results = normalize_runs(conn, runs, schemas)

    assert [r.type_error_events for r in results] == [0, 0, 0, 0]
    documented, guessed = compared(conn, schemas, "int-doc"), compared(conn, schemas, "int-guess")
    for table in DATA_TABLES:
        assert documented[table] == guessed[table], table
    assert [len(documented[t]) for t in DATA_TABLES] == [3, 2, 0, 0, 3, 6, 5]
    # And they are the values the documented shape means.
    a1, a2 = documented["ats_applications"][0], documented["ats_applications"][1]
    assert (a1["current_stage_id"], a1["current_stage_name"]) == ("st-2", "Onsite")
    assert (a2["current_stage_id"], a2["current_stage_name"]) == ("st-3", "Offer")  # nested as currentStage
    assert documented["ats_applications"][2]["is_deleted"]
    assert [(c["candidate_id"], c["location_text"]) for c in documented["ats_candidates"]] == [
        ("c-a1", "Remote"),
        ("c-a2", "London, GB"),
        ("c-a3", None),
    ]
    columns = ("status", "stage_id", "stage_name", "creator_id", "creator_email", "location")
    assert [tuple(i[k] for k in columns) for i in documented["ats_application_interviews"]] == [
        ("AWAITING_FEEDBACK", "st-2", "Onsite", "u2", "recruiter@example.com", "Zoom")
    ] * 2


def test_phone_and_email_types_are_stored_as_sent(conn: Any, schemas: Schemas, lander: Lander) -> None:
    run = lander.run()
    data = event_data("a1", documented=True)
    run.new("a1", data=data)
    run.complete()
    normalize_runs(conn, [run.run_id], schemas)

    (candidate,) = rows(conn, schemas, "SELECT * FROM {t}.ats_candidates")
    assert candidate["phones"] == data["info"]["candidate"]["phones"]  # SKYPE, WORK as sent
    assert candidate["emails"] == data["info"]["candidate"]["emails"]
    assert candidate["email"] == "a1@example.com"  # none is PRIMARY: the first listed


def test_a_stage_nested_as_current_stage_reads_as_the_bare_one(conn: Any, schemas: Schemas, lander: Lander) -> None:
    run = lander.run()
    bare = event_data("bare", documented=True, stage=("st-9", "Final"))
    nested = event_data("nested", documented=True, stage=("st-9", "Final"), nested=True)
    nested_guess = event_data("nested-guess", documented=False, stage=("st-9", "Final"), nested=True)
    nested_null = event_data("nested-null", documented=True)
    nested_null["currentStage"] = {"currentStage": None}
    for app_id, data in [
        ("bare", bare),
        ("nested", nested),
        ("nested-guess", nested_guess),
        ("nested-null", nested_null),
    ]:
        run.new(app_id, data=data)
    run.complete()

    (result,) = normalize_runs(conn, [run.run_id], schemas)

    assert result.type_error_events == 0
    for app_id in ("bare", "nested", "nested-guess"):
        row = app(conn, schemas, app_id)
        assert (row["current_stage_id"], row["current_stage_name"]) == ("st-9", "Final"), app_id
    assert app(conn, schemas, "nested-null")["current_stage_id"] is None
    assert {
        (h["application_id"], h["stage_id"], h["stage_name"])
        for h in rows(conn, schemas, "SELECT * FROM {t}.ats_application_stage_history")
    } == {("bare", "st-9", "Final"), ("nested", "st-9", "Final"), ("nested-guess", "st-9", "Final")}
    stages = rows(conn, schemas, "SELECT DISTINCT stage_id, stage_name FROM {t}.ats_application_interviews")
    assert stages == [{"stage_id": "st-2", "stage_name": "Onsite"}]


def test_a_location_string_is_kept_and_an_object_reads_as_city_state_country(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    sent = {
        "text": "Austin, TX, US",
        "object": {"city": "Austin", "state": "TX", "country": "US", "zipCode": "78701"},
        "partial": {"city": "", "state": None, "country": "GB"},
        "zip-only": {"zipCode": "10115"},  # accepted; nothing to read as text
        "blank": "",
    }
    run = lander.run()
    for app_id, location in sent.items():
        data = event_data(app_id, documented=True)
        data["info"]["candidate"]["location"] = location
        run.new(app_id, data=data)
    run.complete()

    (result,) = normalize_runs(conn, [run.run_id], schemas)

    assert result.type_error_events == 0
    found = {
        c["application_id"]: (c["location_text"], c["location"])
        for c in rows(conn, schemas, "SELECT * FROM {t}.ats_candidates")
    }
    assert found == {
        "text": ("Austin, TX, US", sent["text"]),
        "object": ("Austin, TX, US", sent["object"]),
        "partial": ("GB", sent["partial"]),
        "zip-only": (None, sent["zip-only"]),
        "blank": ("", ""),
    }


def test_interview_status_stage_creator_and_location_are_columns(conn: Any, schemas: Schemas, lander: Lander) -> None:
    run = lander.run()
    data = event_data("a1", documented=True, interviews=0)
    data["interviews"] = [
        {"id": "iv1", "status": "COMPLETE", "stage": {"id": "st-4", "text": "Panel"}, "createdBy": USERS["u1"]},
        # Both keys: createdBy is the documented one.
        {"id": "iv2", "status": "CANCELLED", "createdBy": USERS["u2"], "creator": USERS["u1"], "location": "Room 4"},
        {
            "id": "iv3",
            "status": "SCHEDULED",
            "stage": {"currentStage": {"id": "", "name": "Screen"}},
            "creator": USERS["u1"],
        },
        {"id": "iv4", "createdBy": None, "creator": USERS["u2"], "stage": None},
    ]
    run.new("a1", data=data)
    run.complete()

    (result,) = normalize_runs(conn, [run.run_id], schemas)

    assert result.type_error_events == 0
    found = rows(
        conn,
        schemas,
        "SELECT interview_id, status, stage_id, stage_name, creator_id, creator_email, location, raw "
        "FROM {t}.ats_application_interviews ORDER BY position",
    )
    assert [tuple(r.values())[:-1] for r in found] == [
        ("iv1", "COMPLETE", "st-4", "Panel", "u1", "owner@example.com", None),
        ("iv2", "CANCELLED", None, None, "u2", "recruiter@example.com", "Room 4"),
        ("iv3", "SCHEDULED", None, "Screen", "u1", "owner@example.com", None),  # '' is an absent id
        ("iv4", None, None, None, "u2", "recruiter@example.com", None),
    ]
    assert [r["raw"] for r in found] == data["interviews"]


def test_custom_fields_are_kept_as_sent_and_follow_the_data_version(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1, r2, r3 = lander.run(), lander.run(), lander.run()
    full = event_data("full", documented=True)
    full["customFields"] = {"score": 4, "tags": ["a", "b"], "nested": {"k": None}}
    empty = event_data("empty", documented=True)
    empty["customFields"] = {}
    absent = event_data("absent", documented=True)
    del absent["customFields"]
    for app_id, data in [("full", full), ("empty", empty), ("absent", absent)]:
        r1.new(app_id, data=data)
    r1.complete()
    r2.modified("empty", data=absent | {"info": empty["info"]})  # a later version without customFields
    r2.deleted("full")
    r2.complete()
    r3.modified("absent", data=full | {"info": absent["info"]})
    r3.complete()

    reverse = Schemas(landing=schemas.landing, target=schemas.target + "_reverse")
    normalize_runs(conn, [r3.run_id, r2.run_id, r1.run_id], reverse)
    normalize_runs(conn, [r1.run_id, r2.run_id, r3.run_id], schemas)
    assert dump(conn, reverse) == dump(conn, schemas)

    assert app(conn, schemas, "full")["custom_fields"] == full["customFields"]  # a deletion keeps the last data
    assert app(conn, schemas, "full")["is_deleted"]
    assert app(conn, schemas, "empty")["custom_fields"] is None
    assert app(conn, schemas, "absent")["custom_fields"] == full["customFields"]

    only_first = Schemas(landing=schemas.landing, target=schemas.target + "_r1")
    normalize_runs(conn, [r1.run_id], only_first)
    assert app(conn, only_first, "empty")["custom_fields"] == {}
    assert app(conn, only_first, "absent")["custom_fields"] is None


def test_wrong_types_in_the_documented_fields_are_counted_and_never_fail_the_run(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    def with_interview(app_id: str, **fields: Any) -> dict[str, Any]:
        data = event_data(app_id, documented=True, interviews=0)
        data["interviews"] = [{"id": f"{app_id}-iv", "status": "SCHEDULED", **fields}]
        return data

    bad: dict[str, dict[str, Any]] = {
        "location-list": event_data("location-list", documented=True),
        "location-city": event_data("location-city", documented=True, place="austin"),
        "nested-stage": event_data("nested-stage", documented=True),
        "stage-text": event_data("stage-text", documented=True),
        "custom-list": event_data("custom-list", documented=True),
        "iv-stage": with_interview("iv-stage", stage="Onsite"),
        "iv-nested-stage": with_interview("iv-nested-stage", stage={"currentStage": ["st-1"]}),
        "iv-stage-id": with_interview("iv-stage-id", stage={"id": {"x": 1}, "text": "Onsite"}),
        "iv-created-by": with_interview("iv-created-by", createdBy="u1"),
        "iv-creator": with_interview("iv-creator", creator=7),
        "iv-creator-email": with_interview("iv-creator-email", createdBy={"id": "u1", "email": ["a@x"]}),
        "iv-location": with_interview("iv-location", location={"room": 4}),
        "iv-status": with_interview("iv-status", status=True),
    }
    bad["location-list"]["info"]["candidate"]["location"] = ["Austin"]
    bad["location-city"]["info"]["candidate"]["location"] = {"city": ["Austin"], "country": "US"}
    bad["nested-stage"]["currentStage"] = {"currentStage": "Onsite"}
    bad["stage-text"]["currentStage"] = {"id": "st-1", "text": {"en": "Applied"}}
    bad["custom-list"]["customFields"] = [{"score": 4}]
    run = lander.run()
    for app_id, data in bad.items():
        run.new(app_id, data=data)
    run.new("fine", data=event_data("fine", documented=True))
    run.complete()

    (result,) = normalize_runs(conn, [run.run_id], schemas)

    assert (result.type_error_events, result.applications) == (len(bad), len(bad) + 1)
    candidates = {c["application_id"]: c for c in rows(conn, schemas, "SELECT * FROM {t}.ats_candidates")}
    assert candidates["location-list"]["location_text"] is None
    assert candidates["location-list"]["location"] == ["Austin"]  # the raw value is kept as sent
    assert candidates["location-city"]["location_text"] == "US"
    assert app(conn, schemas, "nested-stage")["current_stage_id"] is None
    assert app(conn, schemas, "stage-text")["current_stage_name"] is None
    custom = app(conn, schemas, "custom-list")
    assert (custom["custom_fields"], custom["models"]["customFields"]) == (None, [{"score": 4}])
    interviews = {r["application_id"]: r for r in rows(conn, schemas, "SELECT * FROM {t}.ats_application_interviews")}
    assert interviews["iv-stage"]["stage_id"] is None
    assert interviews["iv-stage-id"]["stage_name"] == "Onsite"
    assert interviews["iv-created-by"]["creator_id"] is None
    assert interviews["iv-creator-email"]["creator_id"] == "u1"
    assert interviews["iv-creator-email"]["creator_email"] is None
    assert interviews["iv-location"]["location"] is None
    assert interviews["iv-status"]["status"] is None
    assert app(conn, schemas, "fine")["current_stage_id"] == "st-1"
