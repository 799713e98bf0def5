"""Create and migrate the landing schema, safely when several processes start at once.

Two kinds of file build the schema. A numbered migration (``sql/landing/000N_*.sql``) changes tables: it runs
once, in order, and is recorded by name in ``schema_migrations``. A function file (``sql/landing/functions/``)
holds the one definition of a function (or a small family of them): it is re-applied whenever its text
differs from the text last applied, whose digest ``schema_functions`` records. Both run in one transaction
under one advisory lock.
"""

from __future__ import annotations

import logging
from typing import Any

from knit_provider.settings import Schemas, quote_ident
from knit_provider.sql import digest, load_sql

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
# Ordered: a file may call the functions of the files before it. Applied after the migrations, each one whose
# text changed; a file that changes a function's arguments or result drops the old signature itself.
FUNCTIONS: tuple[str, ...] = (
    "landing/functions/values.sql",
    "landing/functions/activations.sql",
    "landing/functions/event_ids.sql",
    "landing/functions/partitions.sql",
    "landing/functions/land_dead_letters.sql",
    "landing/functions/land_events.sql",
)
# The function files a migration calls while it runs, applied (when changed) just before it. They hold today's
# definitions, so a migration may call a function only in a way its later definitions keep working; one that
# needs the function as it was then writes what it needs inline.
USES: dict[str, tuple[str, ...]] = {
    "landing/0002_knit_edge_cases.sql": ("landing/functions/values.sql",),
    "landing/0003_partitioned_events.sql": ("landing/functions/event_ids.sql", "landing/functions/partitions.sql"),
    "landing/0004_integrations.sql": ("landing/functions/values.sql", "landing/functions/activations.sql"),
}
# Every start-up (the receiver's, ``migrate``'s) also creates the weekly event partitions ahead of the clock and
# forgets the event ids past the dedup window (the running receiver does both hourly, the maintenance DAG daily).
_ENSURE_PARTITIONS = "SELECT {schema}.ensure_event_partitions(), {schema}.forget_event_ids()"

_VERSIONS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.schema_functions (
    name       text PRIMARY KEY,
    digest     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_RECORD_FUNCTION = (
    "INSERT INTO {schema}.schema_functions AS f (name, digest) VALUES ({params}) "
    "ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, applied_at = now()"
)


class _Plan:
    """What one call applies, in order: pending migrations (each after the function files it uses), then
    every function file whose text differs from the one last applied."""

    def __init__(self, schemas: Schemas, done: set[str], digests: dict[str, str]) -> None:
        self.schemas = schemas
        self.done = done
        self.digests = digests
        self.migrations: list[str] = []
        self.functions: list[str] = []

    def steps(self) -> list[tuple[str, str, str | None]]:
        """(name, SQL, digest to record for a function file or None for a migration), in order."""
        steps: list[tuple[str, str, str | None]] = []
        for name in MIGRATIONS:
            if name in self.done:
                continue
            steps.extend(self._changed(USES.get(name, ())))
            steps.append((name, load_sql(name, self.schemas), None))
            self.migrations.append(name)
        steps.extend(self._changed(FUNCTIONS))
        return steps

    def _changed(self, names: tuple[str, ...]) -> list[tuple[str, str, str | None]]:
        changed: list[tuple[str, str, str | None]] = []
        for name in names:
            sql = load_sql(name, self.schemas)
            text_digest = digest(sql)
            if self.digests.get(name) == text_digest:
                continue
            self.digests[name] = text_digest
            self.functions.append(name)
            changed.append((name, sql, text_digest))
        return changed

    def log(self) -> None:
        for name in self.migrations:
            log.info("Applied landing migration %s to schema %s", name, self.schemas.landing)
        for name in self.functions:
            log.info("Applied landing function file %s to schema %s", name, self.schemas.landing)


def _lock_key(schemas: Schemas) -> str:
    # Advisory locks take a bigint; hashtext() of a readable key keeps receivers of one schema serialized
    # without colliding with another schema's migrations.
    return f"knit_provider.migrate:{schemas.landing}"


def migrate(conn: Any, schemas: Schemas | None = None) -> list[str]:
    """Apply pending migrations and changed function files over a psycopg2 connection; return the
    migrations applied.

    Runs in one transaction under a transaction-scoped advisory lock, so concurrent callers wait
    for each other and the second finds nothing left to do.
    """
    schemas = schemas or Schemas.from_env()
    schema = quote_ident(schemas.landing)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_lock_key(schemas),))
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        cur.execute(_VERSIONS_DDL.format(schema=schema))
        cur.execute(f"SELECT name FROM {schema}.schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        cur.execute(f"SELECT name, digest FROM {schema}.schema_functions")
        plan = _Plan(schemas, done, dict(cur.fetchall()))
        for name, sql, digest in plan.steps():
            cur.execute(sql)
            if digest is None:
                cur.execute(f"INSERT INTO {schema}.schema_migrations (name) VALUES (%s)", (name,))
            else:
                cur.execute(_RECORD_FUNCTION.format(schema=schema, params="%s, %s"), (name, digest))
        cur.execute(_ENSURE_PARTITIONS.format(schema=schema))
    plan.log()
    return plan.migrations


async def amigrate(conn: Any, schemas: Schemas | None = None) -> list[str]:
    """Apply pending migrations and changed function files over an asyncpg connection (the receiver's
    start-up path)."""
    schemas = schemas or Schemas.from_env()
    schema = quote_ident(schemas.landing)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _lock_key(schemas))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(_VERSIONS_DDL.format(schema=schema))
        done = {row[0] for row in await conn.fetch(f"SELECT name FROM {schema}.schema_migrations")}
        rows = await conn.fetch(f"SELECT name, digest FROM {schema}.schema_functions")
        plan = _Plan(schemas, done, {row[0]: row[1] for row in rows})
        for name, sql, digest in plan.steps():
            await conn.execute(sql)
            if digest is None:
                await conn.execute(f"INSERT INTO {schema}.schema_migrations (name) VALUES ($1)", name)
            else:
                await conn.execute(_RECORD_FUNCTION.format(schema=schema, params="$1, $2"), name, digest)
        await conn.execute(_ENSURE_PARTITIONS.format(schema=schema))
    plan.log()
    return plan.migrations
