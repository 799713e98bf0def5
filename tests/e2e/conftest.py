"""The pipeline for real: Postgres, the simulator and the receiver as processes, Airflow as commands."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from knit_devtools.stack import Stack

INTEGRATIONS = ("int-acme", "int-globex")


@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[Stack]:
    """This module's stack, landing in this module's fresh database (embedded or KNIT_TEST_DATABASE_URL)."""
    with Stack(applications=150, seed=11, database_url=pg_url, integration_ids=INTEGRATIONS) as running:
        yield running


@pytest.fixture
def db(stack: Stack) -> Iterator[Any]:
    conn = psycopg2.connect(stack.database_url)
    try:
        yield conn
    finally:
        conn.close()
