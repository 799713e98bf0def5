"""Every libpq form of a database URL: parsed, rewritten for both drivers, carried by an Airflow connection.

The unit tests compare what libpq itself reads (``parse_dsn``) from the URL given and from what the
provider hands the drivers; the tests against the module's Postgres connect through both drivers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import psycopg2.extensions
import pytest

from knit_devtools.embedded_postgres import free_port
from knit_devtools.stack import Stack
from knit_provider.database_urls import (
    DatabaseUrlError,
    canonical_url,
    connection_from_url,
    redacted,
    with_database,
)
from knit_provider.hooks.landing import KnitLandingHook

# One of each form libpq reads, with what libpq makes of it.
FORMS = {
    "host in the netloc": "postgresql://knit:s3cret@db.internal:5433/landing?sslmode=require",
    "postgres:// scheme": "postgres://knit@db.internal/landing",
    "IPv6 host": "postgresql://knit@[::1]:5433/landing",
    "everything as query parameters": (
        "postgresql://?host=db.internal&port=5433&user=knit&password=p%40ss&dbname=landing&application_name=a"
    ),
    "socket percent-encoded": "postgresql://knit@%2Frun%2Fpostgresql:5433/landing",
    "socket as ?host=": "postgresql://knit@/landing?host=/run/postgresql",
    "socket and port as query": "postgresql://knit@/landing?host=/run/postgresql&port=5433",
    "query host overrides the netloc's": "postgresql://knit@ignored:1/landing?host=db.internal",
    "several hosts in the netloc": "postgresql://knit@h1:5432,h2:5433/landing?target_session_attrs=read-write",
    "several hosts, some ports": "postgresql://knit@h1,h2:5433/landing",
    "several hosts, no port": "postgresql://knit@h1,h2/landing",
    "several hosts as query": "postgresql://knit@/landing?host=h1,h2&port=5432,5433&target_session_attrs=read-write",
    "several hosts, one port": "postgresql://knit@/landing?host=h1,h2&port=5433",
    "a socket and a host": "postgresql://knit@/landing?host=/run/postgresql,h2&port=5432,5433",
    "key=value": "host=/run/postgresql port=5433 dbname=landing user=knit password='a b' connect_timeout=3",
    "spaces and reserved characters": "postgresql://kn%40it:p%3A%2F%40ss@h/my%20db?options=-c%20statement_timeout%3D5",
}


def libpq_reads(url: str) -> dict[str, str]:
    """What libpq reads from ``url``, empty values left out (libpq treats them as not given)."""
    return {key: value for key, value in psycopg2.extensions.parse_dsn(url).items() if value != ""}


@pytest.mark.parametrize("url", FORMS.values(), ids=FORMS.keys())
def test_every_form_is_rewritten_into_a_url_libpq_reads_the_same(url: str) -> None:
    canonical = canonical_url(url)
    assert canonical.startswith("postgresql://")
    assert libpq_reads(canonical) == libpq_reads(url)
    assert canonical_url(canonical) == canonical


@pytest.mark.parametrize("url", FORMS.values(), ids=FORMS.keys())
def test_every_form_survives_an_airflow_connection(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The JSON form of an AIRFLOW_CONN_* variable, read back by Airflow and turned into a URL by the hook.
    monkeypatch.setenv("AIRFLOW_CONN_LANDING_URL_FORM", json.dumps(connection_from_url(url)))
    assert libpq_reads(KnitLandingHook("landing_url_form").dsn()) == libpq_reads(url)


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://knit@/landing?host=/run/postgresql&port=5433",
        "postgresql://knit@/landing?host=h1,h2&port=5432,5433&target_session_attrs=read-write",
    ],
)
def test_a_connection_uri_with_query_hosts_keeps_them(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Written by hand: Airflow's URI parser leaves ?host= and ?port= in the extras, where the hook finds them.
    monkeypatch.setenv("AIRFLOW_CONN_LANDING_URI_FORM", uri)
    assert libpq_reads(KnitLandingHook("landing_uri_form").dsn()) == libpq_reads(uri)


def test_several_ports_travel_as_the_port_extra() -> None:
    connection = connection_from_url("postgresql://knit:pw@h1:5432,h2:5433/landing?target_session_attrs=read-write")
    assert connection == {
        "conn_type": "postgres",
        "host": "h1,h2",
        "schema": "landing",
        "login": "knit",
        "password": "pw",
        "extra": {"port": "5432,5433", "target_session_attrs": "read-write"},
    }


MALFORMED = {
    "": "is empty",
    "mysql://knit:hunter22@h/landing": 'not one libpq reads (missing "="',
    "postgresql://knit:hunter22@h/landing?colour=blue": 'invalid URI query parameter: "colour"',
    "postgresql://knit:hunter22@[::1/landing": "IPv6 host address",
    "postgresql://knit:hunter22@h:54x/landing": "port '54x' is not a port number",
    "postgresql://knit:hunter22@h:70000/landing": "port '70000' is not a port number",
    "postgresql://knit:hunter22@/landing?host=a,b,c&port=1,2": "names 3 host(s) and 2 ports",
    "host=h password=hunter22 dbname": 'missing "=" after "dbname"',
}


@pytest.mark.parametrize("url", MALFORMED.keys())
def test_a_malformed_url_says_what_is_wrong_and_what_to_write(url: str) -> None:
    with pytest.raises(DatabaseUrlError) as raised:
        canonical_url(url)
    message = str(raised.value)
    assert MALFORMED[url] in message
    assert "postgresql://" in message  # what to write
    assert "hunter22" not in message


@pytest.mark.parametrize(
    ("url", "missing"),
    [("postgresql:///landing", "names no host"), ("postgresql://knit@h", "names no database")],
)
def test_an_airflow_connection_needs_a_host_and_a_database(url: str, missing: str) -> None:
    with pytest.raises(DatabaseUrlError, match=missing):
        connection_from_url(url)


def test_a_malformed_database_url_is_refused_by_the_hook() -> None:
    with pytest.raises(ValueError, match="not one libpq reads"):
        KnitLandingHook(database_url="postgres:knit@h/landing").dsn()


@pytest.mark.parametrize(
    "url",
    ["postgresql://knit@h/old", "postgresql://knit@h/?dbname=old", "host=h dbname=old user=knit"],
)
def test_with_database_names_the_new_database_whichever_way_the_old_was_named(url: str) -> None:
    assert libpq_reads(with_database(url, "new")) == {"host": "h", "user": "knit", "dbname": "new"}


def test_redacted_hides_the_password_in_every_form() -> None:
    assert redacted("host=h user=knit password=hunter22 dbname=d") == "postgresql://knit:***@h/d"
    assert redacted("postgresql://knit@h/d?password=hunter22") == "postgresql://knit:***@h/d"


# -- through both drivers, against this module's Postgres ------------------------------------------


@pytest.fixture(scope="module")
def socket_dir(pg_url: str) -> str:
    """The directory of the server's Unix socket (the embedded server listens on one beside TCP)."""
    conn = psycopg2.connect(pg_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT split_part(current_setting('unix_socket_directories'), ',', 1)")
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return str(row[0]).strip()


SESSION = "SELECT current_database(), inet_client_addr() IS NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()"


def both_drivers(hook: KnitLandingHook) -> list[tuple[Any, ...]]:
    """(database, came over a socket) as psycopg2 and as asyncpg see their session."""
    conn = hook.get_conn()
    try:
        with conn.cursor() as cur:
            cur.execute(SESSION)
            sync = cur.fetchone()
    finally:
        conn.close()

    async def read() -> tuple[Any, ...]:
        aconn = await hook.aget_conn()
        try:
            return tuple(await aconn.fetchrow(SESSION))
        finally:
            await aconn.close()

    assert sync is not None
    return [tuple(sync), asyncio.run(read())]


def test_the_stack_hands_airflow_a_socket_url_given_as_host_query(
    pg_url: str, socket_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's path: --database-url -> Stack -> AIRFLOW_CONN_KNIT_LANDING_DEFAULT -> KnitLandingHook.
    database, port = urlsplit(pg_url).path.lstrip("/"), urlsplit(pg_url).port
    url = f"postgresql://postgres@/{database}?host={socket_dir}&port={port}"
    for name, value in Stack(database_url=url).airflow_env().items():
        monkeypatch.setenv(name, value)
    assert both_drivers(KnitLandingHook()) == [(database, True)] * 2


def test_database_urls_in_every_reachable_form_reach_the_same_database(pg_url: str, socket_dir: str) -> None:
    database, port = urlsplit(pg_url).path.lstrip("/"), urlsplit(pg_url).port
    dead = free_port()  # nothing listens there: the first host of a failover list that is down
    over_tcp = [
        pg_url,
        f"postgresql:///{database}?host=127.0.0.1&port={port}&user=postgres",
        f"postgresql://postgres@127.0.0.1:{dead},127.0.0.1:{port}/{database}",
        f"postgresql://postgres@/{database}?host=127.0.0.1,127.0.0.1&port={dead},{port}",
        f"host=127.0.0.1 port={port} user=postgres dbname={database}",
    ]
    over_the_socket = [
        f"postgresql://postgres@{socket_dir.replace('/', '%2F')}:{port}/{database}",
        f"postgresql://postgres@/{database}?host={socket_dir}&port={port}",
        f"postgresql://postgres@/{database}?host=127.0.0.1,{socket_dir}&port={dead},{port}",
        f"host={socket_dir} port={port} user=postgres dbname={database}",
    ]
    for url in over_tcp:
        assert both_drivers(KnitLandingHook(database_url=url)) == [(database, False)] * 2, url
    for url in over_the_socket:
        assert both_drivers(KnitLandingHook(database_url=url)) == [(database, True)] * 2, url


@pytest.mark.parametrize("source", ["flag", "variable"])
def test_the_receiver_refuses_a_malformed_database_url_at_start(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a landing database that is down, to retry forever with 503s: a setting to correct.
    from knit_provider.webhook.settings import SettingsError, resolve_settings

    url = "mysql://knit:hunter22@h/landing"
    flags = {"database_url": url} if source == "flag" else {}
    if source == "variable":
        monkeypatch.setenv("KNIT_WEBHOOK_DATABASE_URL", url)
    with pytest.raises(
        SettingsError, match=r"--database-url \(KNIT_WEBHOOK_DATABASE_URL\): .*not one libpq reads"
    ) as e:
        resolve_settings(**flags)
    assert "hunter22" not in str(e.value)
