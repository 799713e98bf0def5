"""One asyncpg connection that LISTENs on the landing channel and wakes its owner: shared by the triggers.

A trigger loops ``arm() -> check the database -> wait()``. ``arm`` comes before the check, so a
notification that arrives while the check runs is not lost: ``wait`` then returns at once. ``wait``
also returns when the connection drops, so the owner reconnects (and re-checks) without waiting out
its backup poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

CONNECT_TIMEOUT = 10.0
QUERY_TIMEOUT = 30.0

# Errors after which reconnecting may help: the network, the server restarting or shedding load,
# a query that hung on a dead connection. Anything else (no such table, bad password) is permanent.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


def redact(text: str, dsn: str) -> str:
    """Remove the DSN's password from a driver message before it reaches a log or an event."""
    password = urlsplit(dsn).password
    return text.replace(unquote(password), "***").replace(password, "***") if password else text


class Backoff:
    """Exponential delays with jitter between reconnect attempts, reset after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._attempt = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * 2 ** self._attempt)
        self._attempt += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._attempt = 0


class Listener:
    """Hold one connection LISTENing on ``channel``; ``wants(payload)`` says which notifications wake us.

    :param application_name: shown in ``pg_stat_activity`` so an operator can see who holds the connection.
    """

    def __init__(self, dsn: str, channel: str, wants: Callable[[dict[str, Any]], bool],
                 application_name: str) -> None:
        self._dsn = dsn
        self._channel = channel
        self._wants = wants
        self._application_name = application_name
        self._conn: asyncpg.Connection | None = None
        self._woken = asyncio.Event()

    async def connection(self) -> asyncpg.Connection:
        """Return the live connection, opening it and issuing LISTEN if needed."""
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        await self.close()
        conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT,
                                     server_settings={"application_name": self._application_name})
        try:
            conn.add_termination_listener(self._on_terminated)
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    def arm(self) -> None:
        """Forget earlier wake-ups; call right before checking the database."""
        self._woken.clear()

    async def wait(self, timeout: float) -> bool:
        """Sleep until a wanted notification, a lost connection or ``timeout``; True if woken early."""
        if timeout <= 0:
            return self._woken.is_set()
        try:
            await asyncio.wait_for(self._woken.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), 5.0)
        except Exception:  # closing is best effort: a broken connection is dropped instead
            conn.terminate()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            data = None
        if not isinstance(data, dict) or self._wants(data):
            self._woken.set()

    def _on_terminated(self, _conn: Any) -> None:
        self._woken.set()


@contextlib.asynccontextmanager
async def listening(dsn: str, channel: str, wants: Callable[[dict[str, Any]], bool],
                    application_name: str) -> AsyncIterator[Listener]:
    """``async with listening(...) as listener``: the connection is closed however the owner exits."""
    listener = Listener(dsn, channel, wants, application_name)
    try:
        yield listener
    finally:
        await listener.close()
