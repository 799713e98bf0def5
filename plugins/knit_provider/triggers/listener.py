"""One LISTENing connection per triggerer process and landing database, shared by every Knit trigger.

A connection per waiting trigger does not scale: a user who maps a DAG over 500 integrations has 500
``AllConsumedTrigger`` waiting at once, and a Postgres with ``max_connections = 100`` turns them (and
every other client of the landing database) away. So the triggers of one event loop share one
connection per DSN (the triggerer runs all its triggers in one loop; a connection belongs to the loop
that opened it, so the registry is keyed by loop too):

- A trigger enters a :class:`Waiter` saying what it waits for (a run id, a job id, or run event types);
  the first waiter opens the connection, the last one to leave closes it.
- A notification wakes only the waiters it names, in O(1) per notification.
- The connection runs one statement at a time. Run lookups asked for while one is under way, or in the
  same turn of the loop, go out together as one statement (``sql/landing/runs_wanted.sql``). The backup
  poll wakes every waiter at the same moment, so it costs one statement per interval, not one per trigger.
- A lost connection is reopened with backoff by the listener alone (not by each waiter); once it is
  back, every waiter checks again, because notifications sent meanwhile are lost. A waiter asking
  meanwhile gets :class:`Disconnected`, a transient error.

LISTEN needs a session of its own: it cannot go through PgBouncer in transaction mode (the notifications
would go to whichever client holds the server connection next). Point the triggers' connection at
Postgres directly or at a pooler in session mode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import asyncpg

from knit_provider.backoff import Backoff
from knit_provider.hooks.landing import KnitLandingHook
from knit_provider.landing.runs import RunSelector, RunState, afind_runs
from knit_provider.redaction import Redactor
from knit_provider.settings import NOTIFY_CHANNEL, Schemas

QUERY_TIMEOUT = 30.0
# Reconnect waits: 0.25-0.5 s first, doubling to 15-30 s (knit_provider.backoff).
RECONNECT_BACKOFF_INITIAL = 0.5
RECONNECT_BACKOFF_MAX = 30.0
# What pg_stat_activity shows for the shared connection, whichever Knit triggers it serves.
APPLICATION_NAME = "knit-triggerer-listener"

log = logging.getLogger(__name__)
T = TypeVar("T")


class Disconnected(ConnectionError):
    """The shared connection is down and being reopened; the waiter is woken when it is back."""


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


class SharedListener:
    """The connection of one loop and DSN: LISTENs, wakes the waiters a notification names, runs their queries."""

    def __init__(self, dsn: str, channel: str = NOTIFY_CHANNEL) -> None:
        self.dsn = dsn
        self._redact = Redactor.for_dsn(dsn)
        self._channel = channel
        self._waiters: set[Waiter] = set()
        self._by_run: defaultdict[str, set[Waiter]] = defaultdict(set)
        self._by_job: defaultdict[str, set[Waiter]] = defaultdict(set)
        self._by_event: defaultdict[str, set[Waiter]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # asyncpg runs one operation at a time on a connection
        self._asked: dict[Schemas, list[tuple[RunSelector, asyncio.Future[RunState | None]]]] = {}
        self._batcher: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._poll_every: float | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._last_error = "not connected yet"
        # Read by tests and the benchmark: statements run, connections opened.
        self.statements = 0
        self.connects = 0

    @property
    def waiters(self) -> int:
        return len(self._waiters)

    def registered(self) -> list[Waiter]:
        return list(self._waiters)

    @property
    def idle(self) -> bool:
        """No lookup asked for or running: every waiter has its answer (read by the benchmark)."""
        return not self._asked and (self._batcher is None or self._batcher.done()) and not self._lock.locked()

    def add(self, waiter: Waiter) -> None:
        self._waiters.add(waiter)
        for index, keys in self._indexes(waiter):
            for key in keys:
                index[key].add(waiter)
        if self._poll_every is None or waiter.poll_interval < self._poll_every:
            self._schedule_poll(waiter.poll_interval)

    def remove(self, waiter: Waiter) -> None:
        self._waiters.discard(waiter)
        for index, keys in self._indexes(waiter):
            for key in keys:
                index[key].discard(waiter)
                if not index[key]:
                    del index[key]
        if self._waiters and waiter.poll_interval == self._poll_every:
            fastest = min(other.poll_interval for other in self._waiters)
            if fastest != self._poll_every:
                self._schedule_poll(fastest)

    def _indexes(self, waiter: Waiter) -> Iterable[tuple[defaultdict[str, set[Waiter]], Iterable[str]]]:
        return (
            (self._by_run, [waiter.sync_run_id] if waiter.sync_run_id else []),
            (self._by_job, [waiter.sync_job_id] if waiter.sync_job_id else []),
            (self._by_event, waiter.event_types),
        )

    async def find_run(self, selector: RunSelector, schemas: Schemas) -> RunState | None:
        """Look one run up, in the same statement as every other lookup asked for meanwhile."""
        future: asyncio.Future[RunState | None] = asyncio.get_running_loop().create_future()
        self._asked.setdefault(schemas, []).append((selector, future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.get_running_loop().create_task(self._look_up_batches())
        return await future

    async def _look_up_batches(self) -> None:
        while self._asked:
            batches, self._asked = self._asked, {}
            for schemas, asked in batches.items():
                live = [(selector, future) for selector, future in asked if not future.done()]
                if not live:
                    continue
                try:
                    states = await self.run(afind_runs, [selector for selector, _ in live], schemas, QUERY_TIMEOUT)
                except asyncio.CancelledError:  # the listener is closing: nobody may be left awaiting for ever
                    for _, future in live:
                        future.cancel()
                    raise
                except Exception as exc:
                    for _, future in live:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), state in zip(live, states, strict=True):
                    if not future.done():
                        future.set_result(state)

    async def run(self, operation: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``operation(connection, *args)`` on the shared connection, alone; a transient failure reconnects."""
        async with self._lock:
            conn = await self._connection()
            self.statements += 1
            try:
                return await operation(conn, *args)
            except Exception as exc:
                if is_transient(exc):
                    self._lost(conn, f"{type(exc).__name__}: {exc}")
                raise

    async def _connection(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        if conn is not None:
            self._lost(conn, "the connection was closed")
        if self._reconnector is not None and not self._reconnector.done():
            raise Disconnected(f"the shared listening connection is being reopened ({self._last_error})")
        try:
            self._conn = await self._open()
        except Exception as exc:
            if is_transient(exc):
                self._last_error = self._redact(f"{type(exc).__name__}: {exc}")
                self._reconnect_soon()
            raise
        return self._conn

    async def _open(self) -> asyncpg.Connection:
        conn = await KnitLandingHook(database_url=self.dsn, application_name=APPLICATION_NAME).aget_conn()
        try:
            conn.add_termination_listener(self._on_terminated)
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self.connects += 1
        return conn

    def _lost(self, conn: asyncpg.Connection, why: str) -> None:
        current = self._conn
        if current is None or conn is not current:  # a stale callback from a connection already replaced
            return
        self._conn = None
        current.terminate()
        self._last_error = self._redact(why)
        self._reconnect_soon()

    def _reconnect_soon(self) -> None:
        if self._waiters and (self._reconnector is None or self._reconnector.done()):
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        backoff = Backoff(initial=RECONNECT_BACKOFF_INITIAL, maximum=RECONNECT_BACKOFF_MAX)
        while True:
            delay = backoff.next_delay()
            log.warning(
                "Lost the landing database's listening connection (%s); %d trigger(s) wait for it, "
                "reconnecting in %.1f s",
                self._last_error,
                len(self._waiters),
                delay,
            )
            await asyncio.sleep(delay)
            try:
                async with self._lock:
                    self._conn = await self._open()
            except Exception as exc:
                self._last_error = self._redact(f"{type(exc).__name__}: {exc}")
                continue
            log.info(
                "Reconnected to the landing database; %d trigger(s) check again for what they may have missed",
                len(self._waiters),
            )
            self.wake_all()
            return

    def wake_all(self) -> None:
        for waiter in self._waiters:
            waiter.wake()

    def _schedule_poll(self, every: float) -> None:
        if self._poller is not None:
            self._poller.cancel()
        self._poll_every = every
        self._poller = asyncio.get_running_loop().create_task(self._poll(every))

    async def _poll(self, every: float) -> None:
        """The backup poll: wake every waiter at once, so their checks go out as one statement."""
        while True:
            await asyncio.sleep(every)
            self.wake_all()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            data = None
        if not isinstance(data, dict):  # not ours to read: let everyone look rather than miss something
            self.wake_all()
            return
        for index, key in (
            (self._by_run, data.get("sync_run_id")),
            (self._by_job, data.get("sync_job_id")),
            (self._by_event, data.get("event_type")),
        ):
            if isinstance(key, str):
                for waiter in index.get(key, ()):
                    waiter.wake()

    def _on_terminated(self, conn: Any) -> None:
        self._lost(conn, "the server closed the connection")

    async def close(self) -> None:
        for task in (self._poller, self._reconnector, self._batcher):
            if task is not None:
                task.cancel()
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), 5.0)
        except BaseException:  # closing is best effort: a broken or interrupted close drops the connection
            conn.terminate()
            raise


# Per event loop (weakly: a closed test loop takes its listeners with it), per DSN.
_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedListener]] = (
    weakref.WeakKeyDictionary()
)
_closing: set[asyncio.Task[None]] = set()


def shared_listener(dsn: str) -> SharedListener | None:
    """The running loop's listener for ``dsn``, if any trigger is waiting on it."""
    return _listeners.get(asyncio.get_running_loop(), {}).get(dsn)


class Waiter:
    """One trigger's registration with the shared listener: ``async with Waiter(dsn, ...) as waiter``.

    Loop ``arm() -> look in the database -> wait()``: ``arm`` comes before the look, so a wake-up that
    arrives while the look runs is not lost (``wait`` then returns at once). Leaving the block, however
    it is left (event, error, cancellation by the triggerer), unregisters; the last waiter out closes the
    connection in the background, so a trigger's event is not held up by it.

    :param sync_run_id: wake on notifications about this run.
    :param sync_job_id: wake on notifications about any run of this job.
    :param event_types: wake on notifications of these run event types, whatever the run.
    :param poll_interval: the longest this waiter may go without a backup check.
    """

    def __init__(
        self,
        dsn: str,
        *,
        sync_run_id: str | None = None,
        sync_job_id: str | None = None,
        event_types: Iterable[str] = (),
        poll_interval: float,
    ) -> None:
        self.dsn = dsn
        self.sync_run_id = sync_run_id
        self.sync_job_id = sync_job_id
        self.event_types = frozenset(event_types)
        self.poll_interval = poll_interval
        self._woken = asyncio.Event()
        self._listener: SharedListener | None = None
        self.wakeups = 0  # read by tests: proof that a notification woke only the waiters it names

    async def __aenter__(self) -> Waiter:
        listeners = _listeners.setdefault(asyncio.get_running_loop(), {})
        self._listener = listeners.get(self.dsn) or listeners.setdefault(self.dsn, SharedListener(self.dsn))
        self._listener.add(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Synchronous on purpose: no await here, so a cancelled or closed trigger always gets out.
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.remove(self)
        if listener.waiters:
            return
        loop = asyncio.get_running_loop()
        listeners = _listeners.get(loop, {})
        if listeners.get(self.dsn) is listener:
            del listeners[self.dsn]
        task = loop.create_task(listener.close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    @property
    def listener(self) -> SharedListener:
        if self._listener is None:
            raise RuntimeError("Waiter used outside its 'async with' block")
        return self._listener

    def arm(self) -> None:
        """Forget earlier wake-ups; call right before looking in the database."""
        self._woken.clear()

    def wake(self) -> None:
        self.wakeups += 1
        self._woken.set()

    async def wait(self, timeout: float | None) -> bool:
        """Sleep until woken (a notification, the backup poll, a reconnect) or ``timeout``; True if woken."""
        if timeout is not None and timeout <= 0:
            return self._woken.is_set()
        try:
            await asyncio.wait_for(self._woken.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def find_run(self, selector: RunSelector, schemas: Schemas) -> RunState | None:
        return await self.listener.find_run(selector, schemas)

    async def run(self, operation: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await self.listener.run(operation, *args)


async def watch_claims(
    landing_conn_id: str,
    event_types: tuple[str, ...],
    poll_interval: float,
    claim: Callable[..., Awaitable[list[dict[str, Any]]]],
    *args: Any,
    what: str,
    log: Any,  # the trigger's own logger (Airflow's structured one), so lines name the trigger
) -> AsyncIterator[list[dict[str, Any]]]:
    """The loop of an asset watcher's trigger: yield each non-empty batch ``claim(conn, schemas, *args)`` returns.

    Runs for ever. It waits for a notification of one of ``event_types`` (or the backup poll, or a
    reconnect) between empty claims. Every failure is retried, so a watcher never dies and silently stops
    its DAG: a connection that cannot be read yet, or a permanent error (schema not migrated yet,
    permissions), with backoff and loudly; a lost connection once the shared listener is back. ``what``
    names what is being checked for in the log.
    """
    backoff = Backoff(initial=0.5, maximum=60.0)
    while True:
        try:
            dsn = await KnitLandingHook(landing_conn_id).adsn()
            break
        except Exception as exc:  # the connection may be created later: keep the watcher alive
            delay = backoff.next_delay()
            log.error(
                "Cannot use connection %r to reach the landing database (%s: %s); retrying in %.0f s",
                landing_conn_id,
                type(exc).__name__,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
    schemas = Schemas.from_env()
    redact = Redactor.for_dsn(dsn)
    backoff.reset()
    async with Waiter(dsn, event_types=event_types, poll_interval=poll_interval) as waiter:
        while True:
            waiter.arm()
            try:
                claimed = await waiter.run(claim, schemas, *args)
            except Exception as exc:
                detail = redact(f"{type(exc).__name__}: {exc}")
                if is_transient(exc):
                    # The shared listener reconnects and then wakes every waiter.
                    log.warning(
                        "Checking for %s failed (%s); checking again once the shared connection is back", what, detail
                    )
                    await waiter.wait(None)
                    continue
                delay = backoff.next_delay()
                log.error("Checking for %s failed (%s); retrying in %.1f s", what, detail, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if claimed:
                yield claimed
            else:
                await waiter.wait(None)  # a notification, the backup poll, or a reconnect
