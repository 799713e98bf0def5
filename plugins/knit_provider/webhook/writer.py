"""Group commit: many concurrent requests, one ``land_events`` call and one commit per batch.

Each request queues its parsed event with a future and waits. A few writer tasks, each with its
own connection, take whatever is queued (up to ``batch_size``, lingering up to ``batch_wait_ms``
to fill a batch), land it in one statement, and resolve the futures only after the commit
returned, so a 200 always means durable. While one writer waits for its commit, the next batch
fills behind it. A failed batch never resolves as success: a lost connection answers 503 and
reconnects with backoff; a deadlock retries; a refused event is isolated by bisection so the
rest of its batch lands, and only it is set aside: a signed one as a dead letter (its future then
resolves with the reason, answered 200 once stored), an unsigned one with a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from knit_provider.backoff import Backoff, backoff_delay
from knit_provider.hooks.landing import KnitLandingHook
from knit_provider.landing.migrate import amigrate
from knit_provider.landing.store import Failure, Landed, LandingStore, classify
from knit_provider.settings import quote_ident
from knit_provider.webhook.envelope import DeadLetter, Event, safe_headers
from knit_provider.webhook.settings import ReceiverSettings
from knit_provider.webhook.stats import WriterStats

log = logging.getLogger(__name__)

# Memory of the bodies waiting for, or in, their commit, on top of the count limit: 10,000 bodies of
# 5 MiB must not be held at once. A batch being written still counts: it is still held.
MAX_QUEUED_BYTES = 256 * 1024 * 1024
COMMAND_TIMEOUT_SECONDS = 30.0
# Readiness probes within this long of the last database ping share its result: probes cost no query each.
PING_CACHE_SECONDS = 1.0
# How often a running receiver creates the event partitions ahead and forgets ids past the dedup window
# (landing 0003): a receiver up for months keeps its per-event cost flat with the maintenance DAG paused.
HOUSEKEEPING_SECONDS = 3600.0
# Waits between reconnects of a writer: 0.1-0.2 s first, doubling to 2.5-5 s (knit_provider.backoff).
_RECONNECT_BACKOFF = (0.2, 5.0)
# A batch that hit a deadlock or serialization failure is written again up to this many times, after
# 5-10 ms doubling to 40-80 ms: the conflicting transaction is one of our own short batches.
_MAX_RETRIES = 5
_CONFLICT_BACKOFF = (0.01, 0.08)


class Unavailable(Exception):
    """The event was not stored and may be sent again later (answer 503 with ``Retry-After``)."""


class Refused(Exception):
    """The database refused this unsigned event's content (answer 400; a signed one is dead-lettered instead)."""


class _Item:
    __slots__ = ("event", "future", "headers", "letter", "signed", "size")

    def __init__(
        self,
        event: Event | None,
        letter: DeadLetter | None,
        signed: bool,
        headers: list[tuple[bytes, bytes]] | None,
        size: int,
        future: asyncio.Future[str | None],
    ) -> None:
        self.event = event
        self.letter = letter
        self.signed = signed
        self.headers = headers
        self.size = size
        self.future = future


class _Link:
    """A writer's connection, replaced in place when it turns out to be stale."""

    __slots__ = ("conn",)

    def __init__(self, conn: Any) -> None:
        self.conn = conn


def _settle(items: list[_Item], exc: BaseException | None = None) -> None:
    for item in items:
        if not item.future.done():
            if exc is None:
                item.future.set_result(None)
            else:
                item.future.set_exception(exc)


async def connect(settings: ReceiverSettings) -> Any:
    """Open a writer connection; commits are synchronous whatever the server's default, so 200 = durable."""
    hook = KnitLandingHook(database_url=settings.database_url, application_name="knit-webhook")
    return await hook.aget_conn(server_settings={"synchronous_commit": "on"})


class GroupCommitWriter:
    """The receiver's only path to the database: queue events, land them in batches, answer each one."""

    def __init__(
        self, settings: ReceiverSettings, connector: Callable[[ReceiverSettings], Awaitable[Any]] = connect
    ) -> None:
        self.settings = settings
        self._connector = connector
        self._store = LandingStore(settings.schemas)
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._connected = 0
        self._migrated = False
        self._migrate_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._health_conn: Any = None
        self._ping: asyncio.Future[bool] | None = None
        self._pinged: tuple[float, bool] = (-PING_CACHE_SECONDS, False)
        self.stats = WriterStats()

    # -- public -------------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def connected_writers(self) -> int:
        return self._connected

    async def start(self) -> None:
        """Open the writer connections (migrating the schema once) and start the writer tasks.

        A database that is down now is not fatal: writers keep retrying and requests get 503 meanwhile.
        """
        conns = await asyncio.gather(*(self._open() for _ in range(self.settings.writers)))
        self._tasks = [asyncio.create_task(self._run(i, conn), name=f"knit-writer-{i}") for i, conn in enumerate(conns)]
        self._tasks.append(
            asyncio.create_task(
                self.stats.report_forever(self.settings.summary_interval_seconds, lambda: len(self._queue)),
                name="knit-writer-stats",
            )
        )
        self._tasks.append(asyncio.create_task(self._housekeep_forever(), name="knit-writer-housekeeping"))

    async def close(self) -> None:
        """Land what is queued, then stop the writers and close their connections."""
        self._closing = True
        self._wake.set()
        self._full.set()
        writers, others = self._tasks[: self.settings.writers], self._tasks[self.settings.writers :]
        for task in others:
            task.cancel()
        await asyncio.gather(*writers, *others, return_exceptions=True)
        _settle(list(self._queue), Unavailable("the receiver is shutting down"))
        self._queue.clear()
        if self._ping is not None:  # let the probe in flight finish with the connection it uses
            await asyncio.wait((self._ping,))
        if self._health_conn is not None:
            await self._health_conn.close(timeout=2)
            self._health_conn = None

    async def _housekeep_forever(self) -> None:
        """Every ``HOUSEKEEPING_SECONDS``: ``ensure_event_partitions`` and ``forget_event_ids``, on a connection
        of its own. A failure is logged and tried again next time: it never touches the writers."""
        landing = quote_ident(self.settings.schemas.landing)
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            try:
                conn = await self._connector(self.settings)
                try:
                    await conn.execute(f"SELECT {landing}.ensure_event_partitions(), {landing}.forget_event_ids()")
                finally:
                    await conn.close()
            except Exception as exc:  # housekeeping must never stop the receiver
                log.warning(
                    "Landing housekeeping failed (%s: %s); trying again in %.0fs",
                    type(exc).__name__,
                    exc,
                    HOUSEKEEPING_SECONDS,
                )

    def submit_event(
        self, event: Event, signed: bool, headers: list[tuple[bytes, bytes]]
    ) -> asyncio.Future[str | None]:
        """Queue an event; the future resolves after its commit, or raises Unavailable / Refused.

        Its result is ``None`` when the event landed, or the reason when the database refused it and
        it was stored as a dead letter instead (signed events only).
        """
        # The text's size in memory: one character outside Latin-1 makes every character take 2 or 4 bytes.
        return self._submit(event, None, signed, headers, sys.getsizeof(event.payload))

    def submit_dead_letter(self, letter: DeadLetter) -> asyncio.Future[str | None]:
        """Queue a dead letter; it is written in the next batch's transaction."""
        return self._submit(None, letter, True, None, len(letter.body))

    async def ping(self) -> bool:
        """Return whether the database answered within the last second (for readiness probes).

        Concurrent and pipelined probes share one query in flight on the health connection (asyncpg
        runs one at a time: two at once would fail one of them), and reuse its result for
        ``PING_CACHE_SECONDS``, so a burst of probes reports the database, not the contention.
        """
        at, reachable = self._pinged
        if time.monotonic() - at < PING_CACHE_SECONDS:
            return reachable
        if self._ping is None:
            self._ping = asyncio.ensure_future(self._ping_once())
        # shield: a probe whose client went away must not cancel the query the others wait for.
        return await asyncio.shield(self._ping)

    async def _ping_once(self) -> bool:
        try:
            reachable = await self._query_health()
            self._pinged = (time.monotonic(), reachable)
            return reachable
        finally:
            self._ping = None

    async def _query_health(self) -> bool:
        try:
            if self._health_conn is None or self._health_conn.is_closed():
                self._health_conn = await asyncio.wait_for(self._connector(self.settings), 3)
            await self._health_conn.fetchval("SELECT 1", timeout=2)
            return True
        except Exception:
            if self._health_conn is not None:
                self._health_conn.terminate()
                self._health_conn = None
            return False

    # -- queue ----------------------------------------------------------------------------------
    def _submit(
        self,
        event: Event | None,
        letter: DeadLetter | None,
        signed: bool,
        headers: list[tuple[bytes, bytes]] | None,
        size: int,
    ) -> asyncio.Future[str | None]:
        if self._closing:
            raise Unavailable("the receiver is shutting down")
        if self._connected == 0:
            raise Unavailable("the landing database is unreachable")
        if len(self._queue) >= self.settings.queue_size or self._queued_bytes + size > MAX_QUEUED_BYTES:
            self.stats.queue_full()
            raise Unavailable("the write queue is full")
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(event, letter, signed, headers, size, future))
        self._queued_bytes += size
        self._wake.set()
        if len(self._queue) >= self.settings.batch_size:
            self._full.set()
        return future

    async def _next_batch(self) -> list[_Item]:
        while not self._queue:
            if self._closing:
                return []
            self._wake.clear()
            await self._wake.wait()
        wait = self.settings.batch_wait_ms / 1000
        if wait > 0 and len(self._queue) < self.settings.batch_size and not self._closing:
            self._full.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._full.wait(), wait)
        return [self._queue.popleft() for _ in range(min(self.settings.batch_size, len(self._queue)))]

    # -- writer tasks ---------------------------------------------------------------------------
    async def _open(self) -> Any:
        try:
            conn = await self._connector(self.settings)
            if not self._migrated:
                async with self._migrate_lock:
                    if not self._migrated:
                        await amigrate(conn, self.settings.schemas)
                        self._migrated = True
        except Exception as exc:
            log.warning("Landing database unreachable (%s: %s); answering 503 and retrying", type(exc).__name__, exc)
            return None
        self._connected += 1
        if self._connected == 1:
            log.info("Connected to the landing database (schema %s)", self.settings.schemas.landing)
        return conn

    def _lost(self, conn: Any) -> None:
        conn.terminate()
        self._connected -= 1
        if self._connected == 0:
            # Nobody can write what is queued: answer it now rather than let it wait for a reconnect.
            log.warning("Lost every connection to the landing database; answering 503 until it is back")
            _settle(list(self._queue), Unavailable("the landing database is unreachable"))
            self._queued_bytes -= sum(item.size for item in self._queue)  # batches in flight count until done
            self._queue.clear()

    async def _run(self, index: int, conn: Any) -> None:
        backoff = Backoff(*_RECONNECT_BACKOFF)
        while True:
            if conn is None:
                if self._closing:
                    return
                await asyncio.sleep(backoff.next_delay())
                conn = await self._open()
                continue
            backoff.reset()
            batch = await self._next_batch()
            if not batch:
                await conn.close(timeout=5)
                self._connected -= 1
                return
            link = _Link(conn)
            try:
                landed = await self._land(link, batch)
            finally:
                self._queued_bytes -= sum(item.size for item in batch)
            if not landed:
                self._lost(link.conn)
                conn = None
            else:
                conn = link.conn

    async def _reconnect(self, link: _Link) -> bool:
        """Replace a connection that failed (e.g. the server restarted while it sat idle)."""
        link.conn.terminate()
        try:
            link.conn = await asyncio.wait_for(self._connector(self.settings), 3)
        except Exception:
            return False
        return True

    async def _attempt(self, link: _Link, items: list[_Item]) -> tuple[Failure | None, BaseException | None]:
        """Write ``items`` (retrying deadlocks, and once on a fresh connection); resolve them on success."""
        event_items = [item for item in items if item.event is not None]
        events = [item.event for item in event_items if item.event is not None]
        letters = [item.letter for item in items if item.letter is not None]
        reconnected = False
        for attempt in range(_MAX_RETRIES + 1):
            started = time.perf_counter()
            try:
                landed = await self._store.land(link.conn, events, letters, timeout=COMMAND_TIMEOUT_SECONDS)
            except Exception as exc:
                failure = classify(exc)
                if failure is Failure.RETRY and attempt < _MAX_RETRIES:
                    await asyncio.sleep(backoff_delay(attempt + 1, *_CONFLICT_BACKOFF))
                    continue
                # Writing a batch again is safe even if the lost statement did commit: duplicates are ignored.
                if failure is Failure.CONNECTION and not reconnected:
                    reconnected = True
                    if await self._reconnect(link):
                        continue
                return failure, exc
            elapsed = time.perf_counter() - started
            conflicted = [event_items[i] for i in landed.conflicts]
            _settle([item for item in items if item not in conflicted] if conflicted else items)
            self.stats.record(len(events), landed.new, len(letters), elapsed)
            log.debug(
                "Landed a batch of %d events (%d new, %d dead letters) in %.1f ms",
                len(events),
                landed.new,
                len(letters),
                elapsed * 1000,
            )
            _report(landed)
            for item in conflicted:
                event = item.event
                assert event is not None  # conflicts are positions among the events
                reason = f"eventId {event.event_id} already landed with a different body"
                if not await self._set_aside(link, item, reason):
                    # The batch is committed; what is left unanswered is answered 503 and sent again by Knit.
                    _settle(conflicted, Unavailable("the landing database is unreachable"))
                    return Failure.CONNECTION, ConnectionError("lost while keeping a dead letter")
            return None, None
        raise AssertionError("unreachable")

    async def _land(self, link: _Link, items: list[_Item]) -> bool:
        """Land ``items``, isolating refused ones; return False when the connection is lost."""
        failure, exc = await self._attempt(link, items)
        if failure is None:
            return True
        if failure is Failure.DATA:
            if len(items) == 1:
                return await self._refuse(link, items[0], exc)
            middle = len(items) // 2
            if not await self._land(link, items[:middle]):
                _settle(items[middle:], Unavailable("the landing database is unreachable"))
                return False
            return await self._land(link, items[middle:])
        if failure is Failure.CONNECTION:
            log.warning("Landing a batch of %d failed, connection lost (%s: %s)", len(items), type(exc).__name__, exc)
            _settle(items, Unavailable("the landing database is unreachable"))
            return False
        log.error("Landing a batch of %d failed (%s: %s); answering 503", len(items), type(exc).__name__, exc)
        _settle(items, Unavailable("the landing database failed to store the batch"))
        return True

    async def _refuse(self, link: _Link, item: _Item, exc: BaseException | None) -> bool:
        """The database refused this one item: a signed event becomes a dead letter, an unsigned one a 400."""
        if item.event is None:  # a dead letter itself: nowhere else to keep it, so Knit must send it again (503)
            log.warning("Refused one dead letter (%s)", getattr(exc, "message", None) or exc)
            _settle([item], Unavailable("could not store the dead letter"))
            return True
        return await self._set_aside(
            link, item, f"the database refused the event: {getattr(exc, 'message', None) or exc}"
        )

    async def _set_aside(self, link: _Link, item: _Item, reason: str) -> bool:
        """Keep an event that will not land as a dead letter (signed), or answer it 400 (unsigned); return False
        when the connection is lost. Nothing authentic is dropped without a word."""
        log.warning("Refused one event (%s)", reason)
        event = item.event
        assert event is not None
        if not item.signed:
            _settle([item], Refused(reason))
            return True
        letter = DeadLetter(
            event.payload.encode("utf-8"),
            safe_headers(item.headers or []),
            reason,
            event.integration_id,
            (event.event_id, event.event_type, event.sync_job_id, event.sync_run_id),
        )
        probe = _Item(None, letter, True, None, item.size, asyncio.get_running_loop().create_future())
        failure, _ = await self._attempt(link, [probe])
        if failure is Failure.CONNECTION:
            _settle([item], Unavailable("the landing database is unreachable"))
            return False
        if failure is not None:
            _settle([item], Unavailable("could not store the dead letter"))
        elif not item.future.done():
            item.future.set_result(reason)  # authentic and durably kept: answered 200, never bounced
        return True


def _report(landed: Landed) -> None:
    """Say what a batch did that a security review wants to see: replays refused, headers overruled."""
    if landed.replayed:
        log.warning(
            "Acknowledged without storing %d events of runs complete before the dedup window (replays)",
            landed.replayed,
        )
    if landed.rehomed:
        log.warning(
            "Stored %d events under their run's integration, not the other one their X-Knit-Integration-Id named",
            landed.rehomed,
        )
