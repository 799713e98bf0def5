"""How every ``python -m knit_provider`` command reaches the landing database, and says why it could not."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from knit_provider.hooks.landing import KnitLandingHook

T = TypeVar("T")


def landing_hook(args: argparse.Namespace, application_name: str) -> KnitLandingHook:
    """The landing database of the command line: ``--database-url`` if given, else ``--conn-id``."""
    from knit_provider.hooks.landing import KnitLandingHook

    return KnitLandingHook(args.conn_id, database_url=args.database_url, application_name=application_name)


def in_transaction(args: argparse.Namespace, application_name: str, work: Callable[[Any], T]) -> T:
    """Run ``work(cursor)`` in one transaction on a connection of its own (psycopg2)."""
    with landing_hook(args, application_name).transaction() as cur:
        return work(cur)


def connection_problem(exc: BaseException, args: argparse.Namespace) -> str | None:
    """One line saying what to do, when ``exc`` means the landing database could not be reached at all."""
    import asyncpg
    import psycopg2
    from airflow.exceptions import AirflowNotFoundException

    if isinstance(exc, AirflowNotFoundException):
        return (
            f"the Airflow connection {args.conn_id!r} is not defined: define it (e.g. "
            f"AIRFLOW_CONN_{args.conn_id.upper()}='postgresql://user:pass@host:5432/db'), pass --conn-id, "
            "or --database-url"
        )
    if isinstance(exc, (psycopg2.OperationalError, asyncpg.exceptions.ConnectionFailureError, OSError)):
        # The driver's text spans lines (libpq adds a hint on its own line): one line of words.
        return f"cannot reach the landing database: {' '.join(str(exc).split()) or type(exc).__name__}"
    return None
