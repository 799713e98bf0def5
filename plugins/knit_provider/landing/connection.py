"""Turn the Airflow connection of the landing database into a libpq URL both drivers accept."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from knit_provider.settings import DEFAULT_LANDING_CONN_ID

# libpq parameters that may come from the connection's extras; anything else (Airflow-only
# options such as "cursor" or "iam") must not reach the driver.
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


def landing_dsn(conn_id: str = DEFAULT_LANDING_CONN_ID) -> str:
    """Return the landing database URL of an Airflow connection (env var, secrets backend or metastore)."""
    from airflow.sdk import BaseHook

    return dsn_from_connection(BaseHook.get_connection(conn_id))


async def alanding_dsn(conn_id: str = DEFAULT_LANDING_CONN_ID) -> str:
    """Async twin of :func:`landing_dsn` for triggers: never blocks the triggerer's event loop."""
    from airflow.sdk import BaseHook

    return dsn_from_connection(await BaseHook.aget_connection(conn_id))
