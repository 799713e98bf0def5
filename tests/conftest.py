"""Fixtures shared by the whole suite: a real Postgres per test module and an Airflow home.

Postgres: set ``KNIT_TEST_DATABASE_URL`` (a server where the user may create databases) to use
a real server; otherwise an embedded one from the ``pgserver`` wheel is started for the session.
Each test module gets its own fresh database on it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

ROOT = Path(__file__).resolve().parents[1]
DATABASE_URL_ENV = "KNIT_TEST_DATABASE_URL"

# The property tests (the webhook fuzz, normalization in any order) draw a fresh sample on every run,
# in CI too. Hypothesis's own CI profile (chosen when CI=true) derandomizes: every CI run would replay
# the same fixed sample and never find anything new, while many runs of a random sample cover far more
# over time. A failure prints the falsifying example and a ``@reproduce_failure`` blob that replays it
# exactly (print_blob); ``--hypothesis-seed`` fixes a run's seed when wanted. No deadline: the examples
# talk to Postgres, whose timing varies on shared runners. ``--hypothesis-profile`` still overrides.
hypothesis_settings.register_profile("knit", derandomize=False, print_blob=True, deadline=None)
hypothesis_settings.load_profile("knit")

# Airflow reads its configuration on first import, so the test home must exist before any test
# module imports airflow. A fresh home per session keeps runs independent of ~/airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="knit-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)


class PostgresServer:
    """Where test databases are created: an embedded server, or the one named by the environment."""

    def __init__(self, admin_url: str, embedded: object | None = None) -> None:
        self.admin_url = admin_url
        self.embedded = embedded

    def url(self, dbname: str) -> str:
        from knit_provider.database_urls import with_database

        return with_database(self.admin_url, dbname)

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The session's Postgres server."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        yield PostgresServer(url)
        return
    from knit_devtools.embedded_postgres import EmbeddedPostgres

    # fsync off: the suite's crash tests kill processes, not the OS, so durability is unchanged
    # for them, and the suite runs several times faster.
    embedded = EmbeddedPostgres(fsync=False).start()
    try:
        yield PostgresServer(embedded.url(), embedded)
    finally:
        embedded.close()


@pytest.fixture(scope="module")
def pg_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for this test module."""
    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.module.__name__.lower())[-55:]
    return pg_server.create_database(name)


@pytest.fixture(scope="module")
def landing_url(pg_url: str) -> str:
    """This module's database with the landing schema migrated."""
    import psycopg2

    from knit_provider.landing.migrate import migrate

    conn = psycopg2.connect(pg_url)
    try:
        migrate(conn)
    finally:
        conn.close()
    return pg_url


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata database (SQLite) migrated once for the session; returns AIRFLOW_HOME."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return _AIRFLOW_HOME


@pytest.fixture
def lander(landing_url: str) -> Iterator[Any]:
    """Lands Knit events in this module's landing store the way the receiver does (knit_landing_helpers)."""
    from knit_landing_helpers import Lander

    lander = Lander(landing_url)
    try:
        yield lander
    finally:
        lander.close()
