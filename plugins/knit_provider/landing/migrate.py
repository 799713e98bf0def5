"""Create and migrate the landing schema, safely when several processes start at once."""

from __future__ import annotations

import logging
from typing import Any

from knit_provider.settings import Schemas, quote_ident
from knit_provider.sql import load_sql

log = logging.getLogger(__name__)

# Ordered; a file is never edited once released, a change is a new file.
MIGRATIONS: tuple[str, ...] = (
    "landing/0001_init.sql",
    "landing/0002_knit_edge_cases.sql",
    "landing/0003_partitioned_events.sql",
    "landing/0004_integrations.sql",
    "landing/0005_replays_and_tenants.sql",
    "landing/0006_sync_starts.sql",
)
# Every start-up (the receiver's, ``migrate``'s) also creates the weekly event partitions ahead of the clock and
# forgets the event ids past the dedup window (the running receiver does both hourly, the maintenance DAG daily).
_ENSURE_PARTITIONS = "SELECT {schema}.ensure_event_partitions(), {schema}.forget_event_ids()"

_VERSIONS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def _lock_key(schemas: Schemas) -> str:
    # Advisory locks take a bigint; hashtext() of a readable key keeps receivers of one schema serialized
    # without colliding with another schema's migrations.
    return f"knit_provider.migrate:{schemas.landing}"


def _plan(schemas: Schemas) -> list[tuple[str, str]]:
    return [(name, load_sql(name, schemas)) for name in MIGRATIONS]


def migrate(conn: Any, schemas: Schemas | None = None) -> list[str]:
    """Apply pending migrations over a psycopg2 connection; return the names applied.

    Runs in one transaction under a transaction-scoped advisory lock, so concurrent callers wait
    for each other and the second finds nothing left to do.
    """
    schemas = schemas or Schemas.from_env()
    schema = quote_ident(schemas.landing)
    applied: list[str] = []
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_lock_key(schemas),))
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        cur.execute(_VERSIONS_DDL.format(schema=schema))
        cur.execute(f"SELECT name FROM {schema}.schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for name, sql in _plan(schemas):
            if name in done:
                continue
            cur.execute(sql)
            cur.execute(f"INSERT INTO {schema}.schema_migrations (name) VALUES (%s)", (name,))
            applied.append(name)
        cur.execute(_ENSURE_PARTITIONS.format(schema=schema))
    for name in applied:
        log.info("Applied landing migration %s to schema %s", name, schemas.landing)
    return applied


async def amigrate(conn: Any, schemas: Schemas | None = None) -> list[str]:
    """Apply pending migrations over an asyncpg connection (the receiver's start-up path)."""
    schemas = schemas or Schemas.from_env()
    schema = quote_ident(schemas.landing)
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _lock_key(schemas))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(_VERSIONS_DDL.format(schema=schema))
        done = {row[0] for row in await conn.fetch(f"SELECT name FROM {schema}.schema_migrations")}
        for name, sql in _plan(schemas):
            if name in done:
                continue
            await conn.execute(sql)
            await conn.execute(f"INSERT INTO {schema}.schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
        await conn.execute(_ENSURE_PARTITIONS.format(schema=schema))
    for name in applied:
        log.info("Applied landing migration %s to schema %s", name, schemas.landing)
    return applied
