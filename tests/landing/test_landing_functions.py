"""Landing functions have one home each (``sql/landing/functions/``), re-applied when their text changes.

The catalog a fresh install ends with is pinned in ``landing_catalog.txt``: the tables, columns, indexes and
constraints, and a digest of every function's definition (``pg_get_functiondef``). It was taken from the
migration chain as it stood before the functions moved out of it, plus ``schema_functions``; a deliberate change
of the schema updates it (the failing test writes the catalog it found next to the test's temporary files).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import psycopg2
import pytest
from knit_landing_helpers import store_at_version

from knit_provider.landing.migrate import FUNCTIONS, MIGRATIONS, amigrate, migrate
from knit_provider.settings import Schemas

EXPECTED = Path(__file__).with_name("landing_catalog.txt")

_CATALOG_SQL = """
SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') md5 '
       || md5(pg_get_functiondef(p.oid))
FROM pg_proc p WHERE p.pronamespace = to_regnamespace(%(s)s)
UNION ALL
SELECT 'relation ' || c.relname || ' kind ' || c.relkind::text
       || coalesce(' options ' || array_to_string(c.reloptions, ','), '')
       || coalesce(' partition ' || pg_get_expr(c.relpartbound, c.oid), '')
FROM pg_class c WHERE c.relnamespace = to_regnamespace(%(s)s) AND c.relkind <> 'i'
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE a.attidentity WHEN '' THEN '' ELSE ' identity ' || a.attidentity::text END
       || CASE a.attgenerated WHEN '' THEN '' ELSE ' generated ' || a.attgenerated::text END
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = to_regnamespace(%(s)s) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = to_regnamespace(%(s)s)
UNION ALL
SELECT 'constraint ' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid WHERE c.relnamespace = to_regnamespace(%(s)s)
"""
# The weekly partitions depend on the clock, and so do the bounds of the first one: left out, and masked.
_WEEKLY = re.compile(r"\bevents_\d{8}\b")
_TIME = re.compile(r"'\d{4}-\d\d-\d\d [^']*'")
_VALUES = "landing/functions/values.sql"
_STALE_TRY_BIGINT = (
    "CREATE OR REPLACE FUNCTION {l}.try_bigint(value text) RETURNS bigint LANGUAGE sql AS $$ SELECT NULL::bigint $$"
)


@pytest.fixture(scope="module")
def conn(pg_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(pg_url)
    yield connection
    connection.close()


def _catalog(conn: Any, schemas: Schemas) -> list[str]:
    with conn, conn.cursor() as cur:
        cur.execute(_CATALOG_SQL, {"s": schemas.landing})
        lines = (" ".join(row[0].split()) for row in cur.fetchall())
        return sorted(_TIME.sub("'<time>'", line) for line in lines if not _WEEKLY.search(line))


def _assert_expected_catalog(conn: Any, schemas: Schemas, tmp_path: Path) -> None:
    found = _catalog(conn, schemas)
    if found != EXPECTED.read_text().splitlines():
        (tmp_path / EXPECTED.name).write_text("\n".join(found) + "\n")
        pytest.fail(f"the landing catalog differs from {EXPECTED.name}; the one found is {tmp_path / EXPECTED.name}")


def _applied(conn: Any, schemas: Schemas) -> dict[str, tuple[str, Any]]:
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT name, digest, applied_at FROM {schemas.landing}.schema_functions")
        return {name: (digest, at) for name, digest, at in cur.fetchall()}


def _one(conn: Any, sql: str) -> Any:
    with conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def _function_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Applied landing function file")]


def test_every_function_file_is_applied() -> None:
    """A file added to sql/landing/functions/ without a line in FUNCTIONS would never reach a store."""
    folder = resources.files("knit_provider.sql").joinpath("landing/functions")
    assert sorted(f"landing/functions/{f.name}" for f in folder.iterdir() if f.name.endswith(".sql")) == sorted(
        FUNCTIONS
    )


def test_a_fresh_install_ends_with_the_catalog_of_the_old_chain(conn: Any, tmp_path: Path) -> None:
    """Each migration runs with only the function files it declares (USES) applied before it, the rest come
    after: same tables, indexes, constraints and function definitions, no stale overload."""
    schemas = Schemas(landing="landing_catalog")
    assert migrate(conn, schemas) == list(MIGRATIONS)
    _assert_expected_catalog(conn, schemas, tmp_path)
    applied = _applied(conn, schemas)
    assert sorted(applied) == sorted(FUNCTIONS)
    assert migrate(conn, schemas) == []
    assert _applied(conn, schemas) == applied, "an unchanged file is not applied again"


def test_a_store_with_every_migration_and_the_old_functions_gets_todays_and_keeps_every_row(
    conn: Any, tmp_path: Path
) -> None:
    """A store of the release before: all six migrations recorded, the functions as its migrations left them
    (one stale here), no schema_functions. The upgrade applies every file once and changes no row."""
    schemas = Schemas(landing="landing_catalog")
    with conn, conn.cursor() as cur:
        store_at_version(cur, schemas, len(MIGRATIONS), with_functions=True)
        cur.execute(_STALE_TRY_BIGINT.format(l=schemas.landing))
        # Landed by that release's land_events (today's: the last migration changed none of them).
        cur.execute(
            f"SELECT {schemas.landing}.land_events(ARRAY['e1', 'e2'], ARRAY['record.new', "
            "'sync.events.allConsumed'], NULL, NULL, ARRAY['sj', 'sj'], ARRAY['sr', 'sr'], NULL, "
            """ARRAY['int-old', 'int-old'], ARRAY['{"eventData": {}}', '{"eventData": {"consumed": "1"}}']::jsonb[])"""
        )
    tables = ("events", "event_ids", "sync_runs", "integrations", "dead_letters", "sync_starts")

    def rows() -> dict[str, list[Any]]:
        with conn, conn.cursor() as cur:
            found = {}
            for table in tables:
                cur.execute(f"SELECT * FROM {schemas.landing}.{table} ORDER BY 1")
                found[table] = cur.fetchall()
            return found

    before = rows()
    assert len(before["events"]) == 2

    assert migrate(conn, schemas) == []

    assert rows() == before
    assert sorted(_applied(conn, schemas)) == sorted(FUNCTIONS)
    assert _one(conn, f"SELECT {schemas.landing}.try_bigint('12')") == 12, "the stale definition was replaced"
    _assert_expected_catalog(conn, schemas, tmp_path)


def test_the_first_releases_land_events_is_dropped_on_upgrade(conn: Any) -> None:
    """0001 created land_events with nine arrays; the ten-array form defaults its tenth, so both would make a
    nine-array call ambiguous. land_events.sql drops it: a store upgraded from 0001 keeps only today's forms."""
    schemas = Schemas(landing="landing_from_v1")
    with conn, conn.cursor() as cur:
        store_at_version(cur, schemas, 1)
        cur.execute(
            f"CREATE FUNCTION {schemas.landing}.land_events(text[], text[], text[], text[], text[], text[], text[], "
            "text[], jsonb[]) RETURNS bigint LANGUAGE sql AS $$ SELECT 0::bigint $$"
        )
    assert migrate(conn, schemas) == list(MIGRATIONS[1:])
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pronargs FROM pg_proc WHERE proname = 'land_events' AND pronamespace = to_regnamespace(%s) "
            "ORDER BY 1",
            (schemas.landing,),
        )
        assert [row[0] for row in cur.fetchall()] == [10, 11]
        cur.execute(
            f"SELECT {schemas.landing}.land_events(ARRAY['e1'], ARRAY['record.new'], NULL, NULL, NULL, "
            """ARRAY['sr'], NULL, NULL, ARRAY['{}']::jsonb[])"""
        )
        assert cur.fetchone() == (1,)


def test_a_changed_function_file_is_applied_once_by_concurrent_callers(
    conn: Any, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A file whose text differs from the one the store recorded (here: the recorded digest is another, as after
    an upgrade that edited values.sql) is applied again by the first caller; callers waiting on the lock find it
    done; the other files are left alone. Both drivers' paths."""
    schemas = Schemas(landing="landing_changed")
    migrate(conn, schemas)
    before = _applied(conn, schemas)
    with conn, conn.cursor() as cur:
        cur.execute(_STALE_TRY_BIGINT.format(l=schemas.landing))
        cur.execute(
            f"UPDATE {schemas.landing}.schema_functions SET digest = 'the text before' WHERE name = %s", (_VALUES,)
        )
    caplog.set_level(logging.INFO, logger="knit_provider.landing.migrate")
    caplog.clear()

    def run() -> None:
        own = psycopg2.connect(pg_url)
        try:
            migrate(own, schemas)
        finally:
            own.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    assert _function_log(caplog) == [f"Applied landing function file {_VALUES} to schema {schemas.landing}"]
    after = _applied(conn, schemas)
    assert after[_VALUES][0] == before[_VALUES][0], "the file's digest is recorded again"
    assert after[_VALUES][1] > before[_VALUES][1]
    assert {n: v for n, v in after.items() if n != _VALUES} == {n: v for n, v in before.items() if n != _VALUES}
    assert _one(conn, f"SELECT {schemas.landing}.try_bigint('12')") == 12

    # The receiver's start-up path (asyncpg) does the same.
    with conn, conn.cursor() as cur:
        cur.execute(_STALE_TRY_BIGINT.format(l=schemas.landing))
        cur.execute(f"UPDATE {schemas.landing}.schema_functions SET digest = 'older' WHERE name = %s", (_VALUES,))
    caplog.clear()

    async def start_up() -> None:
        receiver = await asyncpg.connect(pg_url)
        try:
            for _ in range(2):
                assert await asyncio.wait_for(amigrate(receiver, schemas), 10) == []
        finally:
            await receiver.close()

    asyncio.run(start_up())
    assert _function_log(caplog) == [f"Applied landing function file {_VALUES} to schema {schemas.landing}"]
    assert _one(conn, f"SELECT {schemas.landing}.try_bigint('12')") == 12
