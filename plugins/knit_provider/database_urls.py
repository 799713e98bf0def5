"""Postgres database URLs in every form libpq reads, one canonical URL for both drivers, and the Airflow connection.

A landing database may be named by any form libpq accepts: the host in the netloc or as ``?host=``
(with ``port``, ``user``, ``password``, ``dbname`` as query parameters too), a Unix socket directory
percent-encoded (``postgresql://u@%2Frun%2Fpg/db``) or as ``?host=/run/pg``, several hosts for
failover (``h1:5432,h2:5433`` or ``?host=h1,h2&port=5432,5433``, with
``target_session_attrs=read-write``), or a ``key=value`` string (``host=/run/pg dbname=knit``).

libpq's own parser (``psycopg2.extensions.parse_dsn``) reads them, so every form means exactly what
it means to psql. asyncpg parses URLs itself and misses some forms (it reads no ``key=value`` string,
prefers the netloc's host over the query's), so :func:`canonical_url` rewrites any form into the one
both drivers read alike: hosts in the netloc where the netloc can say it, else ``?host=...&port=...``
(Unix sockets, one port for several hosts), never both.

An Airflow connection cannot hold every form: its URI parser reads one host from the netloc (a
``?host=`` lands in the extras) and its port is one number. :func:`connection_from_url` converts a URL
into the connection's JSON form (hosts in ``host``, a list of ports in the extra ``port``), which
``KnitLandingHook`` turns back into an equivalent URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import psycopg2
import psycopg2.extensions

from knit_provider.exceptions import KnitInputError

# The libpq parameters that say where and as whom to connect; the URL's netloc and path carry them.
CONNECTION_KEYS = ("host", "port", "user", "password", "dbname")

_EXAMPLES = (
    "write postgresql://user:password@host:5432/dbname; for a Unix socket "
    "postgresql://user@/dbname?host=/socket/dir&port=5432; for several hosts "
    "postgresql://user@host1:5432,host2:5433/dbname?target_session_attrs=read-write"
)
# Where a malformed URL's password may stand in libpq's message, which quotes the input.
_PASSWORDS = (
    (re.compile(r"(://[^/@:]*:)[^/@]*@"), r"\1***@"),
    (re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s\"]*)", re.IGNORECASE), r"\1***"),
)


class DatabaseUrlError(KnitInputError):
    """A database URL libpq cannot read, or one an Airflow connection cannot hold; the message says why."""


def _masked(text: str) -> str:
    for pattern, replacement in _PASSWORDS:
        text = pattern.sub(replacement, text)
    return text


def parse(url: str) -> dict[str, str]:
    """The libpq parameters of ``url`` (any form), empty ones left out; malformed URLs are refused."""
    if not url.strip():
        raise DatabaseUrlError(f"The database URL is empty: {_EXAMPLES}.")
    try:
        params = psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError as exc:
        reason = " ".join(str(exc).split()).removeprefix("invalid dsn: ")
        raise DatabaseUrlError(f"The database URL is not one libpq reads ({_masked(reason)}): {_EXAMPLES}.") from None
    params = {key: value for key, value in params.items() if value != ""}
    _check_ports(params)
    return params


def _check_ports(params: Mapping[str, str]) -> None:
    """Refuse here what libpq would only refuse on connecting: a port that is no number, or one per host too few."""
    ports = params["port"].split(",") if "port" in params else []
    hosts = params["host"].split(",") if "host" in params else [""]
    bad = [port for port in ports if port and not (port.isdigit() and 0 < int(port) < 65536)]
    if bad:
        raise DatabaseUrlError(f"The database URL's port {bad[0]!r} is not a port number (1-65535): {_EXAMPLES}.")
    if len(ports) > 1 and len(ports) != len(hosts):
        raise DatabaseUrlError(
            f"The database URL names {len(hosts)} host(s) and {len(ports)} ports: give one port for all "
            f"hosts or one per host, in the same order: postgresql://user@/dbname?host=h1,h2&port=5432,5433."
        )


def _netloc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else quote(host, safe="")


def _netloc_hosts(host: str | None, port: str | None) -> str | None:
    """The hosts as the netloc writes them, or ``None`` where only the query can say the same."""
    if host is None:
        return ""
    hosts = host.split(",")
    ports = port.split(",") if port is not None else None
    if any(not h or h.startswith("/") for h in hosts):
        # asyncpg takes a netloc host starting with "%2F" for a name, and an empty one for "no host".
        return None
    if ports is None:
        ports = [""] * len(hosts) if len(hosts) == 1 else []
    if len(ports) != len(hosts):
        return None  # one port for several hosts: the netloc has no way to write it
    return ",".join(_netloc_host(h) + (f":{p}" if p else "") for h, p in zip(hosts, ports, strict=True))


def url_from_params(params: Mapping[str, str]) -> str:
    """The canonical ``postgresql://`` URL of libpq parameters (as :func:`parse` returns them)."""
    rest = dict(params)
    user, password = rest.pop("user", ""), rest.pop("password", "")
    dbname, host, port = rest.pop("dbname", None), rest.pop("host", None), rest.pop("port", None)
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = auth + "@" if auth else ""
    hosts = _netloc_hosts(host, port)
    query: dict[str, str] = {}
    if hosts is None:
        query.update({key: value for key, value in (("host", host), ("port", port)) if value is not None})
    else:
        netloc += hosts
    query.update(rest)
    path = "/" + quote(dbname, safe="") if dbname is not None else ""
    # %20, not "+", for spaces (options="-c a=1 -c b=2"): libpq does not read "+" as a space.
    encoded = urlencode(query, quote_via=quote, safe="/,") if query else ""
    return f"postgresql://{netloc}{path}" + (f"?{encoded}" if encoded else "")


def canonical_url(url: str) -> str:
    """``url`` (any libpq form) rewritten as the URL psycopg2 and asyncpg both read the same way."""
    return url_from_params(parse(url))


def with_database(url: str, dbname: str) -> str:
    """``url`` naming database ``dbname`` instead (whether the path or a ``dbname`` parameter named it)."""
    return url_from_params({**parse(url), "dbname": dbname})


def redacted(url: str) -> str:
    """``url`` as the canonical URL with its password shown as ``***``, for messages."""
    params = parse(url)
    if "password" in params:
        params["password"] = "***"
    return url_from_params(params).replace("%2A%2A%2A", "***")


def connection_from_url(url: str) -> dict[str, Any]:
    """The Airflow connection (type ``postgres``, JSON form) equivalent to ``url``.

    Hosts go in ``host`` as libpq lists them (``h1,h2``, ``/socket/dir``); one port goes in ``port``,
    several (which Airflow's integer field cannot hold) in the extra ``port``; every other parameter
    (``sslmode``, ``target_session_attrs``...) is an extra. For a ``AIRFLOW_CONN_*`` variable, write
    ``json.dumps`` of the result.
    """
    params = parse(url)
    if "host" not in params:
        raise DatabaseUrlError(
            f"The database URL names no host, which an Airflow connection needs (and libpq and asyncpg would "
            f"each guess a different default): {_EXAMPLES}."
        )
    if "dbname" not in params:
        # An Airflow connection without a database means "postgres" to the provider, libpq's default is the user.
        raise DatabaseUrlError(f"The database URL names no database: {_EXAMPLES}.")
    port = params.pop("port", None)
    connection: dict[str, Any] = {
        "conn_type": "postgres",
        "host": params.pop("host"),
        "schema": params.pop("dbname"),
        "login": params.pop("user", None),
        "password": params.pop("password", None),
    }
    if port is not None and "," not in port:
        connection["port"] = int(port)
    elif port is not None:
        params["port"] = port
    connection["extra"] = params
    return {key: value for key, value in connection.items() if value is not None}
