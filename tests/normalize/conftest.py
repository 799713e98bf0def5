"""Fixtures of the normalization tests: a fresh landing + target schema pair per test on real Postgres."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from normalize_landing import Lander

from knit_provider.landing.migrate import migrate
from knit_provider.settings import Schemas

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def conn(pg_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(pg_url)
    yield connection
    connection.close()


@pytest.fixture
def schemas(conn: Any) -> Schemas:
    """A landing schema (migrated) and a target schema of this test's own."""
    n = next(_numbers)
    pair = Schemas(landing=f"landing_{n}", target=f"knit_{n}")
    migrate(conn, pair)
    return pair


@pytest.fixture
def lander(conn: Any, schemas: Schemas) -> Lander:
    return Lander(conn, schemas)
