"""``make demo``: its database URL reaches the demo whole, and each step's line names the run of its own type."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from demo_data import application, job, land_run

from knit_devtools.demo import DATABASE_URL_ENV, last_run
from knit_provider.data_types import get
from knit_provider.normalize import normalize_runs
from knit_provider.settings import Schemas

ROOT = Path(__file__).resolve().parents[2]
APPLICATIONS, JOBS = get("ats_applications"), get("ats_jobs")


@pytest.fixture(scope="module")
def conn(landing_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(landing_url)
    yield connection
    connection.close()


def test_each_step_describes_the_latest_run_of_its_own_data_type(conn: Any, landing_url: str) -> None:
    it = "int-steps"
    applications_run = land_run(landing_url, it, "ats_applications", "initial_sync", [application("a1", "j1")])
    # Landed after the applications' run: a line not filtered by data type would describe this one.
    jobs = [job("j1", "Designer", "Design"), job("j2", "QA", "QA")]
    jobs_run = land_run(landing_url, it, "ats_jobs", "initial_sync", jobs)
    landed = f"initial_sync run {applications_run}: 1 record events landed"

    assert last_run(conn, it, APPLICATIONS) == f"{landed}, NOT normalized"
    normalize_runs(conn, [applications_run, jobs_run], Schemas.from_env())
    assert last_run(conn, it, APPLICATIONS) == f"{landed}, normalized (1 applications changed)"
    assert last_run(conn, it, JOBS) == (
        f"initial_sync run {jobs_run}: 2 record events landed, normalized (2 jobs changed)"
    )
    assert last_run(conn, "int-none", JOBS) == "no ats_jobs run landed"


def test_make_demo_hands_a_database_url_holding_an_ampersand_to_the_demo_whole() -> None:
    # The port after "&" is refused by the demo's check of the URL, before it starts anything: the
    # message naming it shows the URL arrived whole (a shell splitting at "&" would have lost it).
    url = "postgresql://demo@/knit?sslmode=require&port=abc"
    done = subprocess.run(
        # BIN: this interpreter's venv; -o: never (re)install the venv from a test.
        ["make", "-s", "-o", ".venv/.installed", f"BIN={Path(sys.executable).parent}", "demo"],
        cwd=ROOT,
        env={**os.environ, DATABASE_URL_ENV: url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "--database-url: The database URL's port 'abc' is not a port number" in done.stderr
