"""Create the normalized tables and their helper functions, idempotently and one process at a time."""

from __future__ import annotations

from typing import Any

from knit_provider.data_types import known
from knit_provider.settings import Schemas, quote_ident
from knit_provider.sql import digest, load_sql

_MARK = "Normalized Knit data, created by knit_provider (schema sha256 {digest})"


def schema_lock_key(schemas: Schemas) -> str:
    """Key of the advisory lock serializing DDL on one target schema (hashed by ``hashtext``)."""
    return f"knit_provider.normalize.schema:{schemas.target}"


def _applied_mark(cur: Any, schemas: Schemas) -> str | None:
    cur.execute("SELECT obj_description(to_regnamespace(%s), 'pg_namespace')", (quote_ident(schemas.target),))
    row = cur.fetchone()
    return row[0] if row else None


def ensure_schema(conn: Any, schemas: Schemas) -> None:
    """Apply the shared ``sql/normalize/schema.sql`` and each data type's ``schema.sql``, unless this text was applied.

    The schema's comment records the digest of the DDL it was built from, so the usual call is
    one catalog read. Otherwise the DDL runs in its own transaction under an advisory lock (every
    statement is ``IF NOT EXISTS`` / ``OR REPLACE``): two processes starting at once cannot race,
    and a DDL statement never waits behind a long normalization holding the tables.
    """
    ddl = schema_ddl(schemas)
    mark = _MARK.format(digest=digest(ddl))
    with conn, conn.cursor() as cur:
        if _applied_mark(cur, schemas) == mark:
            return
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema_lock_key(schemas),))
        if _applied_mark(cur, schemas) == mark:
            return
        cur.execute(ddl)
        cur.execute(f"COMMENT ON SCHEMA {quote_ident(schemas.target)} IS %s", (mark,))


def schema_ddl(schemas: Schemas) -> str:
    """The shared DDL and the change feed's functions, then each known data type's in the registry's order (a
    view may read an earlier type's table), each followed by the change feed's columns on its tables."""
    parts = [load_sql("normalize/schema.sql", schemas), load_sql("normalize/change_feed.sql", schemas)]
    target = quote_ident(schemas.target)
    for spec in known():
        parts.append(spec.load_sql("schema.sql", schemas))
        parts.extend(
            f"SELECT {target}.knit_change_feed_attach('{target}.{quote_ident(table)}');" for table in spec.tables
        )
    return "\n".join(parts)
