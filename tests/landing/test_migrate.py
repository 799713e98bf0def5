from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg2

from knit_provider.landing.migrate import MIGRATIONS, migrate
from knit_provider.settings import Schemas


def _tables(url: str, schema: str) -> set[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
        return {row[0] for row in cur.fetchall()}


def test_concurrent_migrations_apply_once(pg_url: str) -> None:
    schemas = Schemas(landing="landing_concurrent")

    def run(_: int) -> list[str]:
        conn = psycopg2.connect(pg_url)
        try:
            return migrate(conn, schemas)
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(4)))

    assert sorted(map(len, results)) == [0, 0, 0, len(MIGRATIONS)]
    assert {"events", "sync_runs", "dead_letters", "schema_migrations"} <= _tables(pg_url, "landing_concurrent")


def test_migrate_is_idempotent(pg_url: str) -> None:
    conn = psycopg2.connect(pg_url)
    try:
        first = migrate(conn, Schemas(landing="landing_again"))
        second = migrate(conn, Schemas(landing="landing_again"))
    finally:
        conn.close()
    assert first == list(MIGRATIONS)
    assert second == []
