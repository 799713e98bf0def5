"""Deliver one run as Knit does: concurrent signed POSTs, each retried until HTTP 200, then the run events.

``concurrency`` workers each hold one keep-alive connection and pull the next body from the
run's lazy event stream, or from the extras: first the run's ``processed`` events in the order they
were written, then duplicates and late re-deliveries. A
worker keeps retrying its event with capped exponential backoff until it is answered with
exactly 200, or until the retry window (Knit's "4 days", compressed) ends, when the event is
given up. ``sync.events.processed`` goes out once the stream is exhausted (every record emitted),
after any progress reports; ``sync.events.allConsumed`` only after every worker is done, i.e.
after the last record event got its 200, and never when a record event was given up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

import orjson

from knit_simulator.config import SimConfig
from knit_simulator.events import (
    EVENT_ALL_CONSUMED,
    EVENT_PROCESSED,
    Outgoing,
    all_consumed_data,
    processed_data,
    restyler,
    run_event,
)
from knit_simulator.http_client import Connection, DeliveryError, Target
from knit_simulator.rng import EventIds
from knit_simulator.runs import COMPLETED, GAVE_UP, PROCESSED, Run, now_ms
from knit_simulator.signing import Signer

log = logging.getLogger(__name__)
LOGGED_FAILURES_PER_SENDER = 5
EXTRA_PICK_CHANCE = 0.25  # how often a worker takes an extra before the stream is exhausted


class DeliveryCounts(Protocol):
    """Where a sender counts its attempts: a run, or a notice."""

    attempts: int
    refused: int
    connection_errors: int
    dropped: int
    given_up: list[dict[str, Any]]


class Sender:
    """Posts bodies to one target as Knit does: signed, retried with backoff until 200 or the window ends."""

    def __init__(
        self,
        config: SimConfig,
        target: Target,
        integration_id: str,
        counts: DeliveryCounts,
        rng: random.Random,
        label: str,
    ) -> None:
        self._cfg = config
        self._faults = config.faults
        self._target = target
        self._counts = counts
        self._rng = rng
        self._label = label
        self._signer = Signer(config.api_key.encode())
        self._prefix = target.request_prefix(integration_id) + b"X-Knit-Execution-Id: "
        self._executions = EventIds("ex_")  # Knit: a new execution id for every webhook dispatch
        self._restyle = restyler(config.readings)
        self._window = config.readings.retry_window_seconds
        self._logged = 0

    def connection(self) -> Connection:
        return Connection(self._target, self._cfg.request_timeout)

    def _head_tail(self, body: bytes, signed: bytes) -> bytes:
        """The headers after the execution id: the same on every attempt of one body."""
        return b"".join(
            (
                b"\r\nX-Knit-Signature: ",
                self._signer.sign(signed),
                b"\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
            )
        )

    async def deliver(self, connection: Connection, item: Outgoing) -> bool:
        """Post ``item`` until it is answered 200 (True); False once it is given up or, if not retried, failed."""
        counts, faults = self._counts, self._faults
        body = signed = item.body
        if self._restyle is not None:
            body, signed = self._restyle(body)
        tail = self._head_tail(body, signed)
        give_up_at = time.monotonic() + self._window if self._window else math.inf
        attempt = 0
        while True:
            attempt += 1
            counts.attempts += 1
            drop = bool(faults.drop_share) and self._rng.random() < faults.drop_share
            slow = 0.0
            if faults.slow_ms and self._rng.random() < faults.slow_share:
                slow = faults.slow_ms / 1000
            head = b"".join((self._prefix, self._executions.new().encode(), tail))
            try:
                status = await connection.post(head, body, slow=slow, drop=drop)
            except DeliveryError as exc:
                if drop:
                    counts.dropped += 1
                else:
                    counts.connection_errors += 1
                    self._log_failure(item, str(exc))
            else:
                if status == 200:
                    return True
                counts.refused += 1
                self._log_failure(item, f"HTTP {status}")
            if not item.retry:
                return False
            delay = min(self._cfg.retry_max_delay, self._cfg.retry_base_delay * 2 ** (attempt - 1))
            delay *= 0.5 + self._rng.random() / 2
            if time.monotonic() + delay > give_up_at:
                self._give_up(item, attempt)
                return False
            await asyncio.sleep(delay)

    def _give_up(self, item: Outgoing, attempts: int) -> None:
        """Record an event Knit would stop retrying: it is never delivered."""
        try:
            event = orjson.loads(item.body)
        except orjson.JSONDecodeError:
            event = {}
        self._counts.given_up.append(
            {
                "eventId": event.get("eventId", item.event_id),
                "eventType": event.get("eventType"),
                "recordId": event.get("recordId"),
                "kind": item.kind,
                "attempts": attempts,
            }
        )
        log.warning(
            "%s: gave up %s (%s) after %d attempts: its retry window of %gs ended",
            self._label,
            item.event_id,
            item.kind,
            attempts,
            self._window,
        )

    def _log_failure(self, item: Outgoing, what: str) -> None:
        if self._logged < LOGGED_FAILURES_PER_SENDER:
            self._logged += 1
            log.warning("%s: delivery of %s (%s) failed: %s; retrying", self._label, item.event_id, item.kind, what)


class RunDelivery:
    """Delivers one run's event stream and extras; ``run`` holds the counts as they happen."""

    def __init__(
        self,
        config: SimConfig,
        run: Run,
        records: Iterator[Outgoing],
        total: int,
        extras: list[Outgoing],
        ids: EventIds,
        rng: random.Random,
    ) -> None:
        self._cfg = config
        self._faults = config.faults
        self._run = run
        self._records = records
        self.total = total
        self._extras: deque[Outgoing] = deque(extras)
        # processed events, in the order they were written: served before the other extras
        self._reports: deque[Outgoing] = deque()
        self._ids = ids
        self._rng = rng
        self._sender = Sender(config, run.job.target, run.job.integration_id, run, rng, f"run {run.run_id}")
        self._reading = True
        self._progress_reports = config.progress_events
        self._progress_sent = 0
        self._next_progress_at = self._progress_threshold()
        self.kept: list[bytes] = []  # first record bodies, for the next run's late re-delivery

    async def execute(self) -> None:
        """Deliver everything; return once the run's last event was answered 200 or given up."""
        workers = [asyncio.create_task(self._worker()) for _ in range(self._cfg.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
        run = self._run
        # Knit promises allConsumed once every emitted event was consumed: a given-up record means
        # never, and for a run that emitted nothing its glossary promises only `processed`.
        if run.consumed == run.emitted and not (run.emitted == 0 and run.skip_empty_all_consumed):
            run.completed_at = now_ms()
            final = run_event(run, EVENT_ALL_CONSUMED, all_consumed_data(run), self._ids.new())
            run.all_consumed_event_id = final.event_id
            connection = self._sender.connection()
            try:
                await self._sender.deliver(connection, final)
            finally:
                connection.close()
        run.state = GAVE_UP if run.given_up else COMPLETED

    async def _worker(self) -> None:
        sender = self._sender
        connection = sender.connection()
        try:
            while (item := self._next()) is not None:
                if await sender.deliver(connection, item):
                    self._consumed(item)
        finally:
            connection.close()

    def _next(self) -> Outgoing | None:
        extras = self._reports or self._extras
        if extras and (not self._reading or self._rng.random() < EXTRA_PICK_CHANCE):
            return extras.popleft()
        if self._reading:
            item = next(self._records, None)
            if item is not None:
                if self._run.emitted >= self._next_progress_at:
                    self._reports.extend(self._due_progress())
                return item
            self._finish_reading()
        extras = self._reports or self._extras
        return extras.popleft() if extras else None

    def _progress_threshold(self) -> float:
        """Records emitted at which the next progress report is due (evenly spaced through the run)."""
        k, n = self._progress_sent + 1, self._progress_reports
        return math.ceil(k * self.total / (n + 1)) if k <= n else math.inf

    def _due_progress(self) -> list[Outgoing]:
        """The progress reports now due: ``processed`` events with ``complete: false``, as Knit may send."""
        run = self._run
        due = []
        while run.emitted >= self._next_progress_at:
            self._progress_sent += 1
            data = processed_data(run, complete=False)
            data["processedAt"] = str(now_ms())
            data["processed"] = run.processed * self._progress_sent // (self._progress_reports + 1)
            event = run_event(run, EVENT_PROCESSED, data, self._ids.new())
            run.processed_event_ids.append(event.event_id)
            due.append(event)
            self._next_progress_at = self._progress_threshold()
        return due

    def _finish_reading(self) -> None:
        run = self._run
        self._reading = False
        self._reports.extend(self._due_progress())  # in a run that emitted nothing, all are due only now
        run.processed_at = now_ms()
        run.state = PROCESSED
        final = run_event(run, EVENT_PROCESSED, processed_data(run, complete=True), self._ids.new())
        run.processed_event_ids.append(final.event_id)
        self._reports.append(final)

    def _consumed(self, item: Outgoing) -> None:
        if not item.counted:
            return
        run = self._run
        run.consumed += 1
        if len(self.kept) < self._faults.late_redelivery:
            self.kept.append(item.body)
        if self._faults.duplicate_share and self._rng.random() < self._faults.duplicate_share:
            run.duplicates_sent += 1
            self._extras.append(Outgoing(item.event_id, item.body, counted=False, kind="duplicate"))
