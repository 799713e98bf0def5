"""ats_jobs normalizes with the guarantees of applications: exactly once, any order, soft deletes, snapshots.

Runs are landed through ``land_events`` into the real embedded Postgres and normalized by the shared
runner from the type's spec (``knit_provider/data_types/ats_jobs``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from normalize_landing import JOB_TABLES, Lander, Run, dump, in_every_order, rows

from knit_provider.data_types import get
from knit_provider.normalize import normalize_runs
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas, quote_ident

JOBS = "ats_jobs"
START_MS = 1_700_000_000_000
HOUR_MS = 3_600_000


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def job(
    job_id: str,
    *,
    title: Any = "Backend Engineer",
    status: str = "OPEN",
    departments: tuple[str, ...] = ("Engineering",),
    offices: tuple[tuple[str, Any], ...] = (("Berlin", "Berlin, DE"),),
    **info: Any,
) -> dict[str, Any]:
    """A job's ``eventData`` as Knit's Job Data Models describe it (plus one model kept raw only)."""
    user = {"id": "u1", "email": "hm@example.com", "employeeId": "E1"}
    return {
        "info": {
            "id": job_id,
            "title": title,
            "description": f"About {job_id}",
            "createdAt": "2024-01-02T03:04:05Z",
            "updatedAt": None,
            "closedAt": None,
            "status": status,
            "isConfidential": False,
            "jobCodes": [f"code-{job_id}"],
            "infoUrl": f"https://ats.example.com/jobs/{job_id}",
            "applyUrl": f"https://ats.example.com/apply/{job_id}",
            **info,
        },
        "departments": [{"id": f"d-{name}", "name": name} for name in departments],
        "offices": [{"id": f"o-{name}", "name": name, "location": location} for name, location in offices],
        "hiringManagers": [user],
        "recruiters": [{"id": "u2", "email": "rec@example.com", "employeeId": None}],
        "stages": [{"id": "st1", "name": "Screen"}, {"id": "st2", "name": "Onsite"}],
        "jobPosts": [{"id": "p1", "board": "careers"}],
    }


def new(run: Run, job_id: str, **kwargs: Any) -> str:
    return run.record("record.new", job_id, job(job_id, **kwargs))


def modified(run: Run, job_id: str, **kwargs: Any) -> str:
    return run.record("record.modified", job_id, job(job_id, **kwargs))


def closed(run: Run, job_id: str, *, record_id: str | None = None) -> str:
    """Knit sends a closed job as record.deleted; its eventData is our guess, {"jobId"}."""
    return run.record("record.deleted", job_id, {"jobId": job_id}, record_id=record_id)


def jobs_run(lander: Lander, sync_type: str = "delta_sync") -> Run:
    return lander.run(sync_type=sync_type, data_type=JOBS)


def a_job(conn: Any, schemas: Schemas, job_id: str) -> dict[str, Any]:
    (row,) = rows(conn, schemas, "SELECT * FROM {t}.ats_jobs WHERE job_id = %s", (job_id,))
    return row


def children(conn: Any, schemas: Schemas, table: str, job_id: str) -> list[dict[str, Any]]:
    return rows(conn, schemas, f"SELECT * FROM {{t}}.{table} WHERE job_id = %s ORDER BY position", (job_id,))


def ledger(conn: Any, schemas: Schemas, run_id: str) -> dict[str, Any]:
    (row,) = rows(conn, schemas, "SELECT * FROM {t}.normalized_runs WHERE sync_run_id = %s", (run_id,))
    return row


def test_an_initial_sync_then_deltas_modify_close_and_reopen_jobs(conn: Any, schemas: Schemas, lander: Lander) -> None:
    initial, change, reopen = jobs_run(lander, "initial_sync"), jobs_run(lander), jobs_run(lander)
    new(initial, "j1")
    new(initial, "j2", title="Recruiter", departments=("People", "Ops"))
    initial.complete(started_ms=START_MS)
    modified(change, "j1", title="Staff Engineer", departments=("Platform",), offices=(), isConfidential=True)
    # A closed job whose recordId is "" names itself in eventData.jobId.
    closed(change, "j2", record_id="")
    change.complete(started_ms=START_MS + HOUR_MS)
    new(reopen, "j2", title="Senior Recruiter")
    reopen.complete(started_ms=START_MS + 2 * HOUR_MS)

    normalize_runs(conn, [initial.run_id], schemas)
    j1 = a_job(conn, schemas, "j1")
    assert (j1["title"], j1["status"], j1["is_confidential"], j1["job_codes"]) == (
        "Backend Engineer",
        "OPEN",
        False,
        ["code-j1"],
    )
    assert (j1["info_url"], j1["created_at"]) == (
        "https://ats.example.com/jobs/j1",
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )
    assert j1["models"]["jobPosts"] == [{"id": "p1", "board": "careers"}]  # a model kept raw only
    assert [d["name"] for d in children(conn, schemas, "ats_job_departments", "j2")] == ["People", "Ops"]
    assert [(o["office_id"], o["location"]) for o in children(conn, schemas, "ats_job_offices", "j1")] == [
        ("o-Berlin", "Berlin, DE")
    ]
    assert [
        (u["user_id"], u["email"], u["employee_id"]) for u in children(conn, schemas, "ats_job_hiring_managers", "j1")
    ] == [("u1", "hm@example.com", "E1")]
    assert [u["user_id"] for u in children(conn, schemas, "ats_job_recruiters", "j1")] == ["u2"]
    assert [(s["stage_id"], s["name"]) for s in children(conn, schemas, "ats_job_stages", "j1")] == [
        ("st1", "Screen"),
        ("st2", "Onsite"),
    ]
    entry = ledger(conn, schemas, initial.run_id)
    assert (entry["data_type"], entry["records"], entry["records_changed"], entry["snapshot"]) == (
        JOBS,
        2,
        2,
        "applied",
    )
    assert entry["models"] == sorted(
        [
            "job_info",
            "job_departments",
            "job_offices",
            "job_hiringManagers",
            "job_recruiters",
            "job_stages",
            "job_posts",
        ]
    )

    normalize_runs(conn, [change.run_id], schemas)
    j1, j2 = a_job(conn, schemas, "j1"), a_job(conn, schemas, "j2")
    assert (j1["title"], j1["is_confidential"], j1["is_deleted"]) == ("Staff Engineer", True, False)
    assert [d["name"] for d in children(conn, schemas, "ats_job_departments", "j1")] == ["Platform"]
    assert children(conn, schemas, "ats_job_offices", "j1") == []
    # Closed: soft-deleted as of Knit's start of the run, its last data kept.
    assert (j2["is_deleted"], j2["deleted_at"], j2["title"]) == (True, at(START_MS + HOUR_MS), "Recruiter")
    assert [d["name"] for d in children(conn, schemas, "ats_job_departments", "j2")] == ["People", "Ops"]

    normalize_runs(conn, [reopen.run_id], schemas)
    j2 = a_job(conn, schemas, "j2")
    assert (j2["is_deleted"], j2["deleted_at"], j2["title"]) == (False, None, "Senior Recruiter")
    assert [d["name"] for d in children(conn, schemas, "ats_job_departments", "j2")] == ["Engineering"]


def test_the_same_job_runs_in_every_order_give_the_same_tables(conn: Any, schemas: Schemas, lander: Lander) -> None:
    initial, change, reopen = jobs_run(lander, "initial_sync"), jobs_run(lander), jobs_run(lander)
    for job_id in ("j1", "j2", "j3"):
        new(initial, job_id)
    initial.complete(started_ms=START_MS)
    modified(change, "j1", title="Changed", offices=(("Remote", None),))
    closed(change, "j2")
    modified(change, "j3", status="DRAFT")
    change.complete(started_ms=START_MS + HOUR_MS)
    new(reopen, "j2", title="Reopened")
    closed(reopen, "j3")
    reopen.complete(started_ms=START_MS + 2 * HOUR_MS)

    tables = in_every_order(conn, schemas, [initial.run_id, change.run_id, reopen.run_id], JOB_TABLES)

    assert len(tables["ats_jobs"]) == 3
    j1, j2, j3 = (a_job(conn, schemas, j) for j in ("j1", "j2", "j3"))
    assert (j1["title"], j1["is_deleted"]) == ("Changed", False)
    assert (j2["title"], j2["is_deleted"]) == ("Reopened", False)
    assert (j3["status"], j3["is_deleted"], j3["deleted_at"]) == ("DRAFT", True, at(START_MS + 2 * HOUR_MS))


def test_a_job_the_initial_sync_did_not_contain_is_deleted_as_of_it(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    earlier, snapshot = jobs_run(lander), jobs_run(lander, "initial_sync")
    new(earlier, "kept")
    new(earlier, "gone", title="Old role")
    earlier.complete(started_ms=START_MS)
    new(snapshot, "kept")
    snapshot.complete(started_ms=START_MS + HOUR_MS)

    in_every_order(conn, schemas, [earlier.run_id, snapshot.run_id], JOB_TABLES)

    gone = a_job(conn, schemas, "gone")
    assert (gone["is_deleted"], gone["deleted_at"], gone["snapshot_run_id"]) == (
        True,
        at(START_MS + HOUR_MS),
        snapshot.run_id,
    )
    assert gone["title"] == "Old role"  # its last data is kept
    assert a_job(conn, schemas, "kept")["is_deleted"] is False
    entry = ledger(conn, schemas, snapshot.run_id)
    assert (entry["snapshot"], entry["snapshot_deleted"]) == ("applied", 1)


def test_a_wrong_typed_field_is_counted_and_loses_nothing(conn: Any, schemas: Schemas, lander: Lander) -> None:
    run = jobs_run(lander)
    bad = job("bad", title={"text": "Engineer"}, isConfidential="yes")
    bad["offices"].append("Paris")  # an element that is not an object
    run.record("record.new", "bad", bad)
    new(run, "good")
    run.complete()

    (result,) = normalize_runs(conn, [run.run_id], schemas)

    assert result.type_error_events == 1
    row = a_job(conn, schemas, "bad")
    assert (row["title"], row["is_confidential"], row["status"]) == (None, None, "OPEN")
    # Everything sent is kept: the raw models, and each list's usable elements.
    assert row["models"]["info"]["title"] == {"text": "Engineer"}
    assert row["models"]["offices"][-1] == "Paris"
    assert [o["name"] for o in children(conn, schemas, "ats_job_offices", "bad")] == ["Berlin"]
    assert a_job(conn, schemas, "good")["title"] == "Backend Engineer"
    assert ledger(conn, schemas, run.run_id)["type_error_events"] == 1


def test_normalizing_job_runs_twice_changes_nothing(conn: Any, schemas: Schemas, lander: Lander) -> None:
    initial, change = jobs_run(lander, "initial_sync"), jobs_run(lander)
    new(initial, "j1")
    new(initial, "j2")
    initial.complete(started_ms=START_MS)
    modified(change, "j1", title="Changed")
    closed(change, "j2")
    change.complete(started_ms=START_MS + HOUR_MS)
    run_ids = [initial.run_id, change.run_id]

    normalize_runs(conn, run_ids, schemas)
    before = dump(conn, schemas, JOB_TABLES)
    again = normalize_runs(conn, run_ids, schemas)

    assert dump(conn, schemas, JOB_TABLES) == before
    assert [r.records_changed for r in again] == [0, 0]
    assert [ledger(conn, schemas, r)["times_normalized"] for r in run_ids] == [2, 2]


def test_applications_show_their_jobs_title_department_and_office_through_the_view(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    apps = lander.run()
    apps.new("a1", jobId="j1")
    apps.new("a2", jobId="j1")
    apps.new("a3", jobId="not-synced")
    apps.complete(started_ms=START_MS)
    # An initial sync of jobs is a snapshot of jobs only: it must not delete the applications.
    jobs = jobs_run(lander, "initial_sync")
    new(
        jobs,
        "j1",
        title="Data Engineer",
        departments=("Data", "Engineering"),
        offices=(("Austin", "Austin, TX, US"), ("Remote", None)),
    )
    jobs.complete(started_ms=START_MS + HOUR_MS)

    normalize_runs(conn, [apps.run_id, jobs.run_id], schemas)

    view = rows(
        conn,
        schemas,
        "SELECT application_id, job_id, is_deleted, job_title, job_status, job_is_deleted, job_department, "
        "job_department_names, job_office, job_office_location, job_office_names "
        "FROM {t}.ats_applications_with_jobs ORDER BY application_id",
    )
    joined = {
        "job_id": "j1",
        "is_deleted": False,
        "job_title": "Data Engineer",
        "job_status": "OPEN",
        "job_is_deleted": False,
        "job_department": "Data",
        "job_department_names": ["Data", "Engineering"],
        "job_office": "Austin",
        "job_office_location": "Austin, TX, US",
        "job_office_names": ["Austin", "Remote"],
    }
    assert view[:2] == [{"application_id": "a1", **joined}, {"application_id": "a2", **joined}]
    assert view[2] == {
        "application_id": "a3",
        "job_id": "not-synced",
        "is_deleted": False,
        **{key: None for key in joined if key.startswith("job_") and key != "job_id"},
    }
    assert rows(conn, schemas, "SELECT count(*) AS n FROM {t}.ats_applications_with_jobs")[0]["n"] == 3
    assert ledger(conn, schemas, jobs.run_id)["snapshot"] == "applied"


def test_a_column_added_to_ats_applications_joins_the_view_when_the_schema_is_applied_again(
    conn: Any, schemas: Schemas
) -> None:
    ensure_schema(conn, schemas)
    with conn, conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {quote_ident(schemas.target)}.ats_applications ADD COLUMN added_later text")
        # What ensure_schema runs after a release adds the column: ats_jobs' DDL again, view included.
        cur.execute(get(JOBS).load_sql("schema.sql", schemas))

    names = [
        r["column_name"]
        for r in rows(
            conn,
            schemas,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'ats_applications_with_jobs' ORDER BY ordinal_position",
            (schemas.target,),
        )
    ]
    assert names[-1] == "added_later"
    assert names[:2] == ["job_title", "job_status"]
