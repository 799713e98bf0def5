"""``knit_devtools.truth.differences`` for ``ats_jobs``: the jobs' truth is compared with the jobs' tables.

The tables are created here with the columns the jobs' normalization writes (the comparison reads
only those), filled from the simulator's own truth, then spoiled one way at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from psycopg2.extras import Json

from knit_devtools.truth import differences
from knit_provider.settings import Schemas
from knit_simulator.dataset import IntegrationData
from knit_simulator.render import Renderer
from knit_simulator.render_jobs import JOB_MODELS, JobRenderer
from knit_simulator.sources import Jobs

SCHEMAS = Schemas(target="knit_truth")
CHILDREN = {  # table: (eventData key, its columns besides position and raw, the keys they hold)
    "ats_job_departments": ("departments", ("department_id", "name"), ("id", "name")),
    "ats_job_offices": ("offices", ("office_id", "name", "location"), ("id", "name", "location")),
    "ats_job_hiring_managers": ("hiringManagers", ("user_id", "email", "employee_id"), ("id", "email", "employeeId")),
    "ats_job_recruiters": ("recruiters", ("user_id", "email", "employee_id"), ("id", "email", "employeeId")),
    "ats_job_stages": ("stages", ("stage_id", "name"), ("id", "name")),
}
JOB_COLUMNS = """integration_id text, job_id text, title text, description text, status text,
    is_confidential boolean, job_codes jsonb, info_url text, apply_url text, created_at timestamptz,
    updated_at timestamptz, closed_at timestamptz, is_deleted boolean NOT NULL DEFAULT false,
    deleted_at timestamptz, models jsonb, PRIMARY KEY (integration_id, job_id)"""


@pytest.fixture
def conn(pg_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(pg_url)
    with connection.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS knit_truth CASCADE; CREATE SCHEMA knit_truth")
        cur.execute(f"CREATE TABLE knit_truth.ats_jobs ({JOB_COLUMNS})")
        for table, (_, columns, _) in CHILDREN.items():
            cur.execute(
                f"CREATE TABLE knit_truth.{table} (integration_id text, job_id text, position integer, "
                f"{', '.join(f'{c} text' for c in columns)}, raw jsonb NOT NULL, "
                "PRIMARY KEY (integration_id, job_id, position))"
            )
    connection.commit()
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def truth() -> dict[str, Any]:
    """The jobs' truth after a delta that edited, closed and opened jobs."""
    data = IntegrationData(3, "int-truth", 1200)
    renderer = Renderer(data)
    source = Jobs(data, renderer, JobRenderer(renderer))
    source.apply_delta(0.5)
    found = source.truth(JOB_MODELS, set())
    assert found["deleted"], "the delta closed jobs"
    return found


def _land(conn: Any, truth: dict[str, Any]) -> None:
    """Write the truth as a correct normalization would: live jobs, and deleted ones soft-deleted."""
    integration = truth["integrationId"]
    with conn.cursor() as cur:
        for job_id, data in truth["jobs"].items():
            info = data["info"]
            cur.execute(
                "INSERT INTO knit_truth.ats_jobs (integration_id, job_id, title, status, models) "
                "VALUES (%s, %s, %s, %s, %s)",
                (integration, job_id, info["title"], info["status"], Json(data)),
            )
            for table, (key, columns, keys) in CHILDREN.items():
                for position, item in enumerate(data[key]):
                    cur.execute(
                        f"INSERT INTO knit_truth.{table} (integration_id, job_id, position, {', '.join(columns)}, raw) "
                        f"VALUES (%s, %s, %s, {', '.join(['%s'] * len(columns))}, %s)",
                        (integration, job_id, position, *(item[k] for k in keys), Json(item)),
                    )
        for job_id in truth["deleted"]:
            cur.execute(
                "INSERT INTO knit_truth.ats_jobs (integration_id, job_id, is_deleted, deleted_at) "
                "VALUES (%s, %s, true, now())",
                (integration, job_id),
            )
    conn.commit()


def test_tables_holding_the_truth_have_no_differences(conn: Any, truth: dict[str, Any]) -> None:
    _land(conn, truth)
    assert differences(conn, truth, SCHEMAS) == []


def test_each_kind_of_difference_is_named(conn: Any, truth: dict[str, Any]) -> None:
    _land(conn, truth)
    live = sorted(truth["jobs"])
    closed = sorted(truth["deleted"])[0]
    with conn.cursor() as cur:
        cur.execute("UPDATE knit_truth.ats_jobs SET title = 'Wrong' WHERE job_id = %s", (live[0],))
        cur.execute("UPDATE knit_truth.ats_jobs SET status = 'CLOSED' WHERE job_id = %s", (live[1],))
        cur.execute("DELETE FROM knit_truth.ats_job_stages WHERE job_id = %s AND position = 0", (live[2],))
        cur.execute("UPDATE knit_truth.ats_jobs SET models = '{}' WHERE job_id = %s", (live[3],))
        cur.execute("DELETE FROM knit_truth.ats_jobs WHERE job_id = %s", (live[4],))
        cur.execute("UPDATE knit_truth.ats_jobs SET is_deleted = false WHERE job_id = %s", (closed,))
    conn.commit()
    problems = differences(conn, truth, SCHEMAS)
    assert f"job {live[0]}: title 'Wrong', source {truth['jobs'][live[0]]['info']['title']!r}" in problems
    assert f"job {live[1]}: status 'CLOSED', source {truth['jobs'][live[1]]['info']['status']!r}" in problems
    stages = len(truth["jobs"][live[2]]["stages"])
    assert f"job {live[2]}: {stages - 1} rows in ats_job_stages, source has {stages}" in problems
    assert f"job {live[3]}: models differ from the source's eventData" in problems
    assert f"1 live jobs missing from the table, e.g. {[live[4]]}" in problems
    assert f"1 jobs live in the table but not in the source, e.g. {[closed]}" in problems
    assert f"job {closed} was closed in the source but is live in the table" in problems


def test_the_applications_truth_still_reads_the_applications_tables(conn: Any) -> None:
    applications = {"integrationId": "int-truth", "dataType": "ats_applications", "applications": {}, "deleted": {}}
    with pytest.raises(psycopg2.errors.UndefinedTable, match="ats_applications"):
        differences(conn, applications, SCHEMAS)
