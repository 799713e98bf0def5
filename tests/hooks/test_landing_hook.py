"""KnitLandingHook against a real Postgres: one Airflow connection, the same database from both drivers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg2
import pytest
from airflow.exceptions import AirflowFailException

from knit_provider.hooks.landing import KnitLandingHook

# A query that shows, from inside the session, what the connection parameters did.
SESSION_QUERY = (
    "SELECT current_database(), application_name, current_setting('statement_timeout'), "
    "current_setting('lock_timeout') FROM pg_stat_activity WHERE pid = pg_backend_pid()"
)

Define = Callable[..., str]


@pytest.fixture
def define(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Define:
    """Define Airflow connection ``conn_id`` (type postgres) on this module's database; returns its id."""

    def make(conn_id: str = "landing_test", extra: dict[str, Any] | None = None, **fields: Any) -> str:
        url = urlsplit(pg_url)
        conn: dict[str, Any] = {
            "conn_type": "postgres",
            "host": url.hostname,
            "port": url.port,
            "login": url.username,
            "schema": url.path.lstrip("/"),
            "extra": extra or {},
        }
        conn.update(fields)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make


def sync_session(hook: KnitLandingHook) -> tuple[Any, ...]:
    conn = hook.get_conn()
    try:
        with conn.cursor() as cur:
            cur.execute(SESSION_QUERY)
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return tuple(row)


def async_session(hook: KnitLandingHook) -> tuple[Any, ...]:
    async def read() -> tuple[Any, ...]:
        conn = await hook.aget_conn()
        try:
            return tuple(await conn.fetchrow(SESSION_QUERY))
        finally:
            await conn.close()

    return asyncio.run(read())


def test_both_drivers_reach_the_same_database(define: Define, pg_url: str) -> None:
    hook = KnitLandingHook(define())
    conn = hook.get_conn()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE marker (token text)")
            cur.execute("INSERT INTO marker VALUES ('written by psycopg2')")
    finally:
        conn.close()

    async def read() -> str:
        aconn = await hook.aget_conn()
        try:
            return str(await aconn.fetchval("SELECT token FROM marker"))
        finally:
            await aconn.close()

    assert asyncio.run(read()) == "written by psycopg2"
    assert sync_session(hook)[0] == async_session(hook)[0] == urlsplit(pg_url).path.lstrip("/")


def test_extras_reach_both_drivers(define: Define) -> None:
    conn_id = define(
        extra={
            "application_name": "landing-from-extra",
            "options": "-c statement_timeout=1234 -c lock_timeout=777",
            "connect_timeout": "7",
        }
    )
    # The connection's application_name wins over the hook's.
    hook = KnitLandingHook(conn_id, application_name="knit-test")
    expected = ("landing-from-extra", "1234ms", "777ms")
    assert sync_session(hook)[1:] == expected
    assert async_session(hook)[1:] == expected


def test_the_hooks_options_come_after_the_connections(define: Define) -> None:
    conn_id = define(extra={"options": "-c statement_timeout=1234 -c lock_timeout=777"})
    hook = KnitLandingHook(conn_id, application_name="knit-test", options="-c statement_timeout=99")
    expected = ("knit-test", "99ms", "777ms")
    assert sync_session(hook)[1:] == expected
    assert async_session(hook)[1:] == expected


def test_sslmode_require_against_a_server_without_ssl_fails_in_both_drivers(define: Define) -> None:
    hook = KnitLandingHook(define(extra={"sslmode": "require"}))
    with pytest.raises(psycopg2.OperationalError, match="SSL"):
        hook.get_conn()
    with pytest.raises(ConnectionError, match="SSL"):
        asyncio.run(hook.aget_conn())


def test_the_cursor_extra_does_not_change_the_rows(define: Define) -> None:
    hook = KnitLandingHook(define(extra={"cursor": "realdictcursor"}))
    conn = hook.get_conn()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 AS one, 'two' AS two")
            assert cur.fetchone() == (1, "two")
    finally:
        conn.close()
    assert "cursor" not in hook.dsn()


def test_a_database_url_is_used_as_given(pg_url: str) -> None:
    hook = KnitLandingHook(database_url=pg_url, application_name="knit-cli-test")
    assert hook.dsn() == asyncio.run(hook.adsn()) == pg_url
    database = urlsplit(pg_url).path.lstrip("/")
    assert sync_session(hook)[:2] == async_session(hook)[:2] == (database, "knit-cli-test")


def test_a_connect_timeout_in_a_database_url_reaches_both_drivers(pg_url: str) -> None:
    # asyncpg would send connect_timeout to the server as a setting, which the server refuses.
    hook = KnitLandingHook(database_url=f"{pg_url}?connect_timeout=3&application_name=from-url")
    assert sync_session(hook)[1] == async_session(hook)[1] == "from-url"


def test_connect_timeout_bounds_the_wait_in_both_drivers() -> None:
    # A server that completes the TCP handshake (the kernel does, from the backlog) and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        hook = KnitLandingHook(database_url=f"postgresql://knit@127.0.0.1:{port}/landing", connect_timeout=2)
        started = time.monotonic()
        with pytest.raises(psycopg2.OperationalError, match="timeout"):
            hook.get_conn()
        with pytest.raises(TimeoutError):
            asyncio.run(hook.aget_conn())
        # Two waits of 2 s, and margin for a loaded machine; without the timeout each would hang.
        assert time.monotonic() - started < 15


def test_a_connection_without_a_host_says_what_to_set(define: Define) -> None:
    hook = KnitLandingHook(define(host=""))
    message = "has no host: set it to the Postgres server"
    # A task fails at once on a wrong connection (AirflowFailException), instead of retrying it.
    with pytest.raises(AirflowFailException, match=message):
        hook.get_conn()
    with pytest.raises(AirflowFailException, match=message):
        asyncio.run(hook.aget_conn())


def test_an_extra_neither_driver_shares_is_refused_by_name(define: Define) -> None:
    hook = KnitLandingHook(define(extra={"keepalives_idle": "30"}))
    with pytest.raises(AirflowFailException, match=r"'keepalives_idle'.*remove them"):
        hook.get_conn()
    with pytest.raises(ValueError, match="'keepalives_idle'"):
        asyncio.run(hook.adsn())


def test_the_retention_extra_stays_with_the_provider(define: Define) -> None:
    hook = KnitLandingHook(define(extra={"retention": "30d"}))
    assert "retention" not in hook.dsn()
    assert sync_session(hook)[0] == async_session(hook)[0]


def test_a_unix_socket_host_works_in_both_drivers(define: Define, pg_url: str) -> None:
    conn = psycopg2.connect(pg_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT split_part(current_setting('unix_socket_directories'), ',', 1)")
            (socket_dir,) = cur.fetchone()
    finally:
        conn.close()
    hook = KnitLandingHook(define(host=socket_dir.strip(), port=urlsplit(pg_url).port))
    assert "?host=" in hook.dsn()
    database = urlsplit(pg_url).path.lstrip("/")
    for session in (sync_session(hook), async_session(hook)):
        assert session[0] == database

    async def client_address() -> Any:
        aconn = await hook.aget_conn()
        try:
            return await aconn.fetchval("SELECT inet_client_addr()")
        finally:
            await aconn.close()

    assert asyncio.run(client_address()) is None  # NULL: the session came over the socket, not TCP


def test_login_and_password_survive_the_url(define: Define) -> None:
    hook = KnitLandingHook(define(login="knit@corp", password="p:/@ss w%rd"))
    url = urlsplit(hook.dsn())
    assert (unquote(url.username or ""), unquote(url.password or "")) == ("knit@corp", "p:/@ss w%rd")


def test_a_missing_connection_raises_airflows_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    monkeypatch.delenv("AIRFLOW_CONN_LANDING_NOWHERE", raising=False)
    with pytest.raises(AirflowNotFoundException):
        KnitLandingHook("landing_nowhere").get_conn()
    with pytest.raises(AirflowNotFoundException):
        asyncio.run(KnitLandingHook("landing_nowhere").aget_conn())


def test_asyncpg_server_settings_are_kept(pg_url: str) -> None:
    async def read() -> str:
        conn = await KnitLandingHook(database_url=pg_url).aget_conn(server_settings={"synchronous_commit": "off"})
        try:
            return str(await conn.fetchval("SHOW synchronous_commit"))
        finally:
            await conn.close()

    assert asyncio.run(read()) == "off"
