"""The landing database: every connection the provider opens to it, synchronous and asynchronous.

``KnitLandingHook`` is a ``PostgresHook``: the landing store is an ordinary Airflow ``postgres``
connection (``knit_landing_default``), so its form, its extras (``sslmode``, ``sslrootcert``,
``options``, ``iam`` ...) and secrets backends work as users know them. Two things differ from the
parent, both because the rest of the provider depends on them:

* ``get_conn`` always returns a psycopg2 connection with tuple rows. ``PostgresHook`` switches to
  psycopg 3 when that package happens to be installed, and honours a ``cursor`` extra that changes
  the shape of rows; the landing code (COPY, ``execute_values``, LISTEN) is written for psycopg2.
* ``aget_conn`` opens an asyncpg connection from the same connection (the receiver's writer, the
  triggers' shared listener), through ``aget_connection`` so a triggerer's loop never blocks.

Processes that run without Airflow (the standalone receiver, the CLIs given ``--database-url``)
pass ``database_url`` instead of a connection id; the same methods then use that URL.
"""

from __future__ import annotations

import asyncio
from copy import deepcopy
from typing import Any
from urllib.parse import quote, urlencode

import asyncpg
import psycopg2
import psycopg2.extensions
from airflow.providers.postgres.hooks.postgres import PostgresHook

from knit_provider.settings import DEFAULT_LANDING_CONN_ID

CONNECT_TIMEOUT_SECONDS = 10

# libpq parameters a connection's extras may carry into a URL; anything else (Airflow-only options
# such as "cursor" or "iam") must not reach the driver. asyncpg reads every one of these from a URL.
_LIBPQ_EXTRAS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
)


def dsn_from_connection(conn: Any) -> str:
    """Build ``postgresql://user:password@host:port/dbname?...`` from an Airflow ``Connection``."""
    if not conn.host:
        raise ValueError(
            f"Connection {conn.conn_id!r} has no host: set it to the Postgres server that holds the "
            "landing store, e.g. AIRFLOW_CONN_KNIT_LANDING_DEFAULT='postgresql://user:pass@host:5432/db'."
        )
    auth = ""
    if conn.login:
        auth = quote(conn.login, safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        auth += "@"
    host = conn.host
    if host.startswith("/"):
        # A Unix socket directory travels as the host query parameter.
        netloc, params = auth, {"host": host}
    else:
        netloc, params = auth + (f"[{host}]" if ":" in host else host), {}
    if conn.port:
        netloc += f":{conn.port}"
    extras = conn.extra_dejson or {}
    params.update({key: str(extras[key]) for key in _LIBPQ_EXTRAS if extras.get(key) not in (None, "")})
    dbname = quote(conn.schema or "postgres", safe="")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{netloc}/{dbname}{query}"


class KnitLandingHook(PostgresHook):
    """Connect to the landing database that the receiver writes and the DAGs read.

    :param knit_landing_conn_id: the Airflow connection (type ``postgres``) of the landing database.
    :param database_url: a libpq URL to use instead of a connection (processes without Airflow).
    :param application_name: how the connections show in ``pg_stat_activity``, unless the
        connection's extras name one.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(knit_landing_conn_id=knit_landing_conn_id, **kwargs)
        self.knit_landing_conn_id = knit_landing_conn_id
        self.database_url = database_url
        self.application_name = application_name

    # -- synchronous (psycopg2) -------------------------------------------------------------------

    def get_conn(self) -> psycopg2.extensions.connection:
        """Open a psycopg2 connection to the landing database (tuple rows, whatever the extras say)."""
        if self.database_url:
            args: dict[str, Any] = {"dsn": self.database_url}
            given = psycopg2.extensions.parse_dsn(self.database_url)
        else:
            args = self._connection_args(self.connection)
            given = args
        if "connect_timeout" not in given:
            args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        if self.application_name and "application_name" not in given:
            args["application_name"] = self.application_name
        return psycopg2.connect(**args)

    def _connection_args(self, connection: Any) -> dict[str, Any]:
        conn = deepcopy(connection)
        if conn.extra_dejson.get("iam", False):
            conn.login, conn.password, conn.port = self.get_iam_token(conn)
        args: dict[str, Any] = {
            "host": conn.host,
            "user": conn.login,
            "password": conn.password,
            "dbname": self.database or conn.schema,
            "port": conn.port,
        }
        if self.options:
            args["options"] = self.options
        args.update(
            (name, value) for name, value in conn.extra_dejson.items() if name not in self.ignored_extra_options
        )
        return {name: value for name, value in args.items() if value not in (None, "")}

    def dsn(self) -> str:
        """The landing database as a libpq URL (what ``--database-url`` and the receiver take)."""
        if self.database_url:
            return self.database_url
        return self._dsn(self.connection)

    def _dsn(self, connection: Any) -> str:
        conn = deepcopy(connection)
        if conn.extra_dejson.get("iam", False):
            conn.login, conn.password, conn.port = self.get_iam_token(conn)
        if self.database:
            conn.schema = self.database
        return dsn_from_connection(conn)

    # -- asynchronous (asyncpg) -------------------------------------------------------------------

    async def adsn(self) -> str:
        """Async twin of :meth:`dsn`: the connection is read without blocking the event loop."""
        if self.database_url:
            return self.database_url
        connection = await self.aget_connection(self.knit_landing_conn_id)
        if connection.extra_dejson.get("iam", False):
            # Token generation is a blocking cloud SDK call.
            return await asyncio.to_thread(self._dsn, connection)
        return self._dsn(connection)

    async def aget_conn(
        self, *, timeout: float = CONNECT_TIMEOUT_SECONDS, server_settings: dict[str, str] | None = None
    ) -> asyncpg.Connection:
        """Open an asyncpg connection to the landing database."""
        settings = dict(server_settings or {})
        if self.application_name:
            settings.setdefault("application_name", self.application_name)
        dsn = await self.adsn()
        if "application_name=" in dsn:
            # The connection's own application_name wins, as it does for psycopg2.
            settings.pop("application_name", None)
        return await asyncpg.connect(dsn, timeout=timeout, server_settings=settings or None)
