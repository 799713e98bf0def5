"""Fixtures of the normalization tests: a fresh landing + target schema pair per test on real Postgres."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from normalize_landing import Lander

from knit_provider.landing.migrate import migrate
from knit_provider.settings import Schemas, quote_ident

_numbers = itertools.count(1)

# The tables normalization owns, with the order that makes a dump comparable.
DATA_TABLES = {
    "ats_applications": "integration_id, application_id",
    "ats_application_interviews": "integration_id, application_id, position",
    "ats_application_offers": "integration_id, application_id, position",
    "ats_application_attachments": "integration_id, application_id, position",
    "ats_candidates": "integration_id, candidate_id",
    "ats_application_versions": "integration_id, application_id, first_seq, seq",
    "ats_application_stage_history": "integration_id, application_id, position",
}


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


def dump(conn: Any, schemas: Schemas, tables: dict[str, str] = DATA_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the normalized tables, ordered: two dumps are equal iff the tables are identical."""
    out = {}
    with conn, conn.cursor() as cur:
        for table, order in tables.items():
            cur.execute(f"SELECT * FROM {quote_ident(schemas.target)}.{table} ORDER BY {order}")
            out[table] = cur.fetchall()
    return out


def rows(conn: Any, schemas: Schemas, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """Run a query with ``{t}`` as the target schema; rows as dicts."""
    with conn, conn.cursor() as cur:
        cur.execute(sql.replace("{t}", quote_ident(schemas.target)).replace("{l}", quote_ident(schemas.landing)),
                    params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
