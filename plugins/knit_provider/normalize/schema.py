"""Create the normalized tables and their helper functions, idempotently and one process at a time."""

from __future__ import annotations

from typing import Any

from knit_provider.settings import Schemas
from knit_provider.sql import load_sql


def schema_lock_key(schemas: Schemas) -> str:
    """Key of the advisory lock serializing DDL on one target schema (hashed by ``hashtext``)."""
    return f"knit_provider.normalize.schema:{schemas.target}"


def ensure_schema(conn: Any, schemas: Schemas) -> None:
    """Apply ``sql/normalize/schema.sql`` in its own transaction under a transaction-scoped advisory lock.

    Every statement is ``IF NOT EXISTS`` / ``OR REPLACE``, so running it before each normalization
    costs milliseconds, and two normalizations starting at once cannot race on ``CREATE TABLE``.
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema_lock_key(schemas),))
        cur.execute(load_sql("normalize/schema.sql", schemas))
