"""The landing database: every connection the provider opens to it, synchronous and asynchronous.

``KnitLandingHook`` is a ``PostgresHook``: the landing store is an ordinary Airflow ``postgres``
connection (``knit_landing_default``), so its form, ``iam`` and secrets backends work as users know
them. Both drivers connect from one libpq URL built by :meth:`KnitLandingHook.dsn`, so they reach the
same database with the same parameters. Where it differs from the parent, it is for that reason:

* The extras honoured are :data:`HONOURED_EXTRAS`, which psycopg2 and asyncpg both understand. Airflow's
  own extras (``iam``, ``cursor``, ``sqlalchemy_*`` ...) and the provider's ``retention`` never reach
  the server; any other extra is refused with a message naming it, rather than working in one driver
  and failing in the other.
* ``get_conn`` always returns a psycopg2 connection with tuple rows. ``PostgresHook`` switches to
  psycopg 3 when that package happens to be installed, and honours a ``cursor`` extra that changes
  the shape of rows; the landing code (COPY, ``execute_values``, LISTEN) is written for psycopg2.
* ``aget_conn`` opens an asyncpg connection from the same URL (the receiver's writer, the triggers'
  shared listener), read through ``aget_connection`` so a triggerer's loop never blocks.

Processes that run without Airflow (the standalone receiver, the CLIs given ``--database-url``)
pass ``database_url`` instead of a connection id; the same methods then use that URL. Any form libpq
reads is accepted, and both drivers get it rewritten by ``knit_provider.database_urls.canonical_url``
(asyncpg reads no ``key=value`` string and misreads some URL forms); a connection is turned into the
same canonical URL, its ``host``/``port`` extras (where Airflow's URI parser leaves ``?host=``) winning
over the fields as the query does in a URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from typing import Any

import asyncpg
import psycopg2
import psycopg2.extensions
from airflow.providers.postgres.hooks.postgres import PostgresHook

from knit_provider.database_urls import CONNECTION_KEYS, canonical_url, url_from_params
from knit_provider.exceptions import KnitInputError
from knit_provider.landing.retention import RETENTION_EXTRA
from knit_provider.settings import DEFAULT_LANDING_CONN_ID

CONNECT_TIMEOUT_SECONDS = 10

# libpq parameters a connection's extras may carry, each understood by psycopg2 and asyncpg alike
# (asyncpg reads them from the URL; connect_timeout becomes its own timeout, see aget_conn).
HONOURED_EXTRAS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
)
# Extras read by Airflow (IAM tokens, cursor types, SQLAlchemy) or by the provider, never by the server.
_NOT_FOR_THE_SERVER = frozenset(PostgresHook.ignored_extra_options) | {RETENTION_EXTRA}


def dsn_from_connection(conn: Any) -> str:
    """The canonical libpq URL (``postgresql://user:password@host:port/dbname?...``) of an Airflow ``Connection``.

    As in a libpq URL, a connection parameter among the extras (``host``, ``port``...: where Airflow's
    URI parser leaves ``?host=/socket/dir`` or ``?host=h1,h2&port=5432,5433``) overrides the field.
    """
    extras = conn.extra_dejson or {}
    unknown = sorted(set(extras) - set(HONOURED_EXTRAS) - set(CONNECTION_KEYS) - _NOT_FOR_THE_SERVER)
    if unknown:
        raise KnitInputError(
            f"Connection {conn.conn_id!r} has extra(s) {', '.join(map(repr, unknown))} that the landing "
            f"store's two drivers (psycopg2 and asyncpg) cannot both use: remove them. The extras passed "
            f"to the server are {', '.join(HONOURED_EXTRAS)}."
        )
    fields = {
        "host": conn.host,
        "port": conn.port,
        "user": conn.login,
        "password": conn.password,
        "dbname": conn.schema or "postgres",
    }
    given = {**fields, **{key: extras.get(key) for key in CONNECTION_KEYS if key in extras}}
    if given["host"] in (None, ""):
        raise KnitInputError(
            f"Connection {conn.conn_id!r} has no host: set it to the Postgres server that holds the "
            "landing store, e.g. AIRFLOW_CONN_KNIT_LANDING_DEFAULT='postgresql://user:pass@host:5432/db' "
            "(or '...@/db?host=/socket/dir' for a Unix socket)."
        )
    given.update({key: extras[key] for key in HONOURED_EXTRAS if key in extras})
    return url_from_params({key: str(value) for key, value in given.items() if value not in (None, "")})


class KnitLandingHook(PostgresHook):
    """Connect to the landing database that the receiver writes and the DAGs read.

    :param knit_landing_conn_id: the Airflow connection (type ``postgres``) of the landing database.
    :param database_url: a libpq URL to use instead of a connection (processes without Airflow).
    :param application_name: how the connections show in ``pg_stat_activity``, unless the
        connection's extras name one.
    :param options: server options for this hook's sessions (``-c statement_timeout=...``), added after
        the connection's ``options`` extra, so they win where both set the same parameter.
    :param connect_timeout: seconds to wait for the server, unless the connection's extras say.
    """

    conn_name_attr = "knit_landing_conn_id"
    default_conn_name = DEFAULT_LANDING_CONN_ID
    conn_type = "postgres"
    hook_name = "Knit landing store"

    def __init__(
        self,
        knit_landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
        *,
        database_url: str | None = None,
        application_name: str | None = None,
        connect_timeout: int = CONNECT_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(knit_landing_conn_id=knit_landing_conn_id, **kwargs)
        self.knit_landing_conn_id = knit_landing_conn_id
        self.database_url = database_url
        self.application_name = application_name
        self.connect_timeout = connect_timeout

    def dsn(self) -> str:
        """The landing database as a libpq URL (what ``--database-url`` and the receiver take)."""
        if self.database_url:
            return canonical_url(self.database_url)
        return self._dsn(self.connection)

    def _dsn(self, connection: Any) -> str:
        conn = deepcopy(connection)
        if conn.extra_dejson.get("iam", False):
            conn.login, conn.password, conn.port = self.get_iam_token(conn)
        if self.database:
            conn.schema = self.database
        return dsn_from_connection(conn)

    def _session(self, given: dict[str, str]) -> dict[str, str]:
        """What this hook adds to the URL's parameters ``given``: the URL's own application_name wins."""
        session: dict[str, str] = {}
        if self.application_name and "application_name" not in given:
            session["application_name"] = self.application_name
        if self.options:
            session["options"] = " ".join(part for part in (given.get("options"), self.options) if part)
        return session

    # -- synchronous (psycopg2) -------------------------------------------------------------------

    def get_conn(self) -> psycopg2.extensions.connection:
        """Open a psycopg2 connection to the landing database (tuple rows, whatever the extras say)."""
        dsn = self.dsn()
        given = psycopg2.extensions.parse_dsn(dsn)
        args: dict[str, Any] = self._session(given)
        if "connect_timeout" not in given:
            args["connect_timeout"] = self.connect_timeout
        return psycopg2.connect(dsn, **args)

    @contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor in one transaction on a connection of its own: committed on success, then closed."""
        conn = self.get_conn()
        try:
            with conn, conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    # -- asynchronous (asyncpg) -------------------------------------------------------------------

    async def adsn(self) -> str:
        """Async twin of :meth:`dsn`: the connection is read without blocking the event loop."""
        if self.database_url:
            return canonical_url(self.database_url)
        connection = await self.aget_connection(self.knit_landing_conn_id)
        if connection.extra_dejson.get("iam", False):
            # Token generation is a blocking cloud SDK call.
            return await asyncio.to_thread(self._dsn, connection)
        return self._dsn(connection)

    async def aget_conn(self, *, server_settings: dict[str, str] | None = None) -> asyncpg.Connection:
        """Open an asyncpg connection to the landing database.

        :param server_settings: further session settings (e.g. ``synchronous_commit``); the
            application name and options come from the connection and the hook, as for psycopg2.
        """
        dsn = await self.adsn()
        given = psycopg2.extensions.parse_dsn(dsn)
        timeout = float(given.get("connect_timeout") or self.connect_timeout)
        if "connect_timeout" in given:
            # asyncpg would send it to the server as a setting, which the server refuses.
            dsn = url_from_params({key: value for key, value in given.items() if key != "connect_timeout"})
        settings = {**(server_settings or {}), **self._session(given)}
        return await asyncpg.connect(dsn, timeout=timeout, server_settings=settings or None)
