"""The demo's report on real Postgres: runs and tables per data type, applications per job title and department.

Small runs of both types are landed through ``land_events`` and normalized by the provider's runner,
as the demo's DAGs do; the report then reads the tables of the default schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from demo_data import application, application_deleted, job, job_closed, land_run

from knit_devtools.report import collect, format_report
from knit_provider.data_types import get
from knit_provider.normalize import normalize_runs
from knit_provider.settings import Schemas

APPLICATIONS, JOBS = get("ats_applications"), get("ats_jobs")
SCHEMAS = Schemas(landing="knit_landing", target="knit")
VIEW = "ats_applications_with_jobs"


@pytest.fixture(scope="module")
def conn(landing_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(landing_url)
    yield connection
    connection.close()


def _normalize(conn: Any, *run_ids: str) -> None:
    normalize_runs(conn, run_ids, SCHEMAS)


def test_each_data_type_has_its_runs_tables_and_deletions_and_applications_join_their_jobs(
    conn: Any, landing_url: str
) -> None:
    it = "int-both"
    apps = [application(a, j) for a, j in (("a1", "j1"), ("a2", "j1"), ("a3", "j1"), ("a4", "j2"), ("a5", "j2"))]
    titles = (("j1", "Backend Engineer", "Engineering"), ("j2", "Designer", "Design"), ("j3", "Recruiter", "HR"))
    job_records = [job(*title) for title in titles]
    runs = [
        land_run(landing_url, it, "ats_applications", "initial_sync", apps),
        land_run(landing_url, it, "ats_jobs", "initial_sync", job_records),
        land_run(landing_url, it, "ats_applications", "delta_sync", [application_deleted("a5", "j2")]),
        land_run(landing_url, it, "ats_jobs", "delta_sync", [job_closed("j3")]),
    ]
    _normalize(conn, *runs)

    report = collect(conn, it, SCHEMAS, [APPLICATIONS, JOBS])

    applications, jobs = report.data_types
    assert (applications.name, jobs.name) == ("ats_applications", "ats_jobs")
    assert [(r["run"], r["type"], r["landed"], r["normalized"]) for r in applications.runs] == [
        (runs[0], "initial_sync", 5, True),
        (runs[2], "delta_sync", 1, True),
    ]
    assert [(r["run"], r["type"], r["landed"]) for r in jobs.runs] == [
        (runs[1], "initial_sync", 3),
        (runs[3], "delta_sync", 1),
    ]
    # Every table of each spec is counted, but the view, which is listed apart.
    assert [t for t, _ in applications.table_rows] == [f"knit.{t}" for t in APPLICATIONS.tables]
    assert dict(applications.table_rows)["knit.ats_applications"] == 5
    assert dict(applications.table_rows)["knit.ats_candidates"] == 5
    assert applications.views == []
    assert dict(jobs.table_rows) == {
        "knit.ats_jobs": 3,
        "knit.ats_job_departments": 3,
        "knit.ats_job_offices": 3,
        "knit.ats_job_hiring_managers": 0,
        "knit.ats_job_recruiters": 0,
        "knit.ats_job_stages": 0,
    }
    assert jobs.views == [f"knit.{VIEW}"]
    assert (applications.deleted, jobs.deleted) == (1, 1)

    with_jobs = report.with_jobs
    assert with_jobs is not None
    assert with_jobs.by_title == [("Backend Engineer", 3), ("Designer", 1)]  # a5 is deleted
    assert with_jobs.by_department == [("Engineering", 3), ("Design", 1)]
    assert (with_jobs.live, with_jobs.joined, with_jobs.joined_percent) == (4, 4, 100.0)

    text = format_report(report)
    assert "ATS jobs (ats_jobs): runs (knit_landing.sync_runs)" in text
    assert f"(views, not counted: knit.{VIEW})" in text
    assert "(1 jobs are soft-deleted" in text
    assert "Applications per job title, top 10" in text
    assert "Applications joined to their job: 4 of 4 not deleted (100.0%)" in text
    assert "job columns in the view are NULL" not in text


def test_an_application_whose_job_is_not_synced_lowers_the_share_and_is_named_so(conn: Any, landing_url: str) -> None:
    it = "int-missing-job"
    apps = [application("b1", "k1"), application("b2", "k-unknown")]
    runs = [
        land_run(landing_url, it, "ats_applications", "initial_sync", apps),
        land_run(landing_url, it, "ats_jobs", "initial_sync", [job("k1", "Designer", "Design")]),
    ]
    _normalize(conn, *runs)

    report = collect(conn, it, SCHEMAS, [APPLICATIONS, JOBS])

    assert report.with_jobs is not None
    assert report.with_jobs.by_title == [("(job not synced)", 1), ("Designer", 1)]
    assert report.with_jobs.by_department == [("(job not synced)", 1), ("Design", 1)]
    text = format_report(report)
    assert "Applications joined to their job: 1 of 2 not deleted (50.0%)" in text
    assert "(the others name a job not in knit.ats_jobs: their job columns in the view are NULL)" in text


def test_the_ten_job_titles_with_most_applications_are_shown(conn: Any, landing_url: str) -> None:
    it = "int-many-titles"
    titles = [f"Title {n:02}" for n in range(12)]
    # Job n has n + 1 applications: the top ten are titles 11 down to 2.
    apps = [application(f"m{n}-{k}", f"t{n}") for n in range(12) for k in range(n + 1)]
    runs = [
        land_run(landing_url, it, "ats_applications", "initial_sync", apps),
        land_run(landing_url, it, "ats_jobs", "initial_sync", [job(f"t{n}", t, t) for n, t in enumerate(titles)]),
    ]
    _normalize(conn, *runs)

    report = collect(conn, it, SCHEMAS, [APPLICATIONS, JOBS])

    assert report.with_jobs is not None
    expected = [(titles[n], n + 1) for n in range(11, 1, -1)]
    assert report.with_jobs.by_title == expected
    assert report.with_jobs.by_department == expected
    assert (report.with_jobs.live, report.with_jobs.joined) == (78, 78)


def test_with_applications_alone_the_report_has_no_jobs_figures(conn: Any, landing_url: str) -> None:
    it = "int-applications-only"
    _normalize(conn, land_run(landing_url, it, "ats_applications", "initial_sync", [application("c1", "x1")]))

    report = collect(conn, it, SCHEMAS, [APPLICATIONS])

    assert [t.name for t in report.data_types] == ["ats_applications"]
    assert report.with_jobs is None
    assert report.applications_by_status == [("ACTIVE", 1)]
    assert "job title" not in format_report(report)
