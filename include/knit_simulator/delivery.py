"""Deliver one run as Knit does: concurrent signed POSTs, each retried until HTTP 200, then the run events.

``concurrency`` workers each hold one keep-alive connection and pull the next body from the
run's lazy event stream (or from the extras: duplicates, late re-deliveries, run events). A
worker keeps retrying its event with capped exponential backoff until it is answered with
exactly 200. ``sync.events.processed`` goes out once the stream is exhausted (every record
emitted); ``sync.events.allConsumed`` only after every worker is done, i.e. after the last
record event got its 200.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Iterator

from knit_simulator.config import SimConfig
from knit_simulator.events import (
    EVENT_ALL_CONSUMED,
    EVENT_PROCESSED,
    Outgoing,
    all_consumed_data,
    processed_data,
    run_event,
)
from knit_simulator.http_client import Connection, DeliveryError
from knit_simulator.rng import EventIds
from knit_simulator.runs import COMPLETED, PROCESSED, Run, now_ms
from knit_simulator.signing import Signer

log = logging.getLogger(__name__)
LOGGED_FAILURES_PER_RUN = 5
EXTRA_PICK_CHANCE = 0.25  # how often a worker takes an extra before the stream is exhausted


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
        self._ids = ids
        self._rng = rng
        self._signer = Signer(config.api_key.encode())
        self._prefix = run.job.target.request_prefix(run.job.integration_id)
        self._reading = True
        self._progress_sent = not config.progress_events
        self._logged = 0
        self.kept: list[bytes] = []  # first record bodies, for the next run's late re-delivery

    async def execute(self) -> None:
        """Deliver everything; return once ``sync.events.allConsumed`` was answered with 200."""
        workers = [asyncio.create_task(self._worker()) for _ in range(self._cfg.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
        run = self._run
        run.completed_at = now_ms()
        final = run_event(run, EVENT_ALL_CONSUMED, all_consumed_data(run), self._ids.new())
        run.all_consumed_event_id = final.event_id
        connection = Connection(run.job.target, self._cfg.request_timeout)
        try:
            await self._deliver(connection, final)
        finally:
            connection.close()
        run.state = COMPLETED

    async def _worker(self) -> None:
        connection = Connection(self._run.job.target, self._cfg.request_timeout)
        try:
            while (item := self._next()) is not None:
                await self._deliver(connection, item)
        finally:
            connection.close()

    def _next(self) -> Outgoing | None:
        if self._extras and (not self._reading or self._rng.random() < EXTRA_PICK_CHANCE):
            return self._extras.popleft()
        if self._reading:
            item = next(self._records, None)
            if item is not None:
                if not self._progress_sent and self._run.emitted * 2 >= self.total:
                    self._send_progress()
                return item
            self._finish_reading()
        return self._extras.popleft() if self._extras else None

    def _send_progress(self) -> None:
        """A ``processed`` event with ``complete: false``, as Knit may send while a run reads."""
        run = self._run
        self._progress_sent = True
        data = processed_data(run, complete=False)
        data["processedAt"] = str(now_ms())
        data["processed"] = run.processed * run.emitted // max(1, self.total)
        self._extras.appendleft(run_event(run, EVENT_PROCESSED, data, self._ids.new()))

    def _finish_reading(self) -> None:
        run = self._run
        self._reading = False
        run.processed_at = now_ms()
        run.state = PROCESSED
        event = run_event(run, EVENT_PROCESSED, processed_data(run, complete=True), self._ids.new())
        run.processed_event_id = event.event_id
        self._extras.appendleft(event)

    def _head(self, item: Outgoing) -> bytes:
        return b"".join(
            (
                self._prefix,
                b"X-Knit-Execution-Id: ex_",
                item.event_id[3:].encode(),
                b"\r\nX-Knit-Signature: ",
                self._signer.sign(item.body),
                b"\r\nContent-Length: ",
                str(len(item.body)).encode(),
                b"\r\n\r\n",
            )
        )

    async def _deliver(self, connection: Connection, item: Outgoing) -> None:
        run, faults = self._run, self._faults
        head = self._head(item)
        attempt = 0
        while True:
            attempt += 1
            run.attempts += 1
            drop = bool(faults.drop_share) and self._rng.random() < faults.drop_share
            slow = 0.0
            if faults.slow_ms and self._rng.random() < faults.slow_share:
                slow = faults.slow_ms / 1000
            try:
                status = await connection.post(head, item.body, slow=slow, drop=drop)
            except DeliveryError as exc:
                if drop:
                    run.dropped += 1
                else:
                    run.connection_errors += 1
                    self._log_failure(item, str(exc))
            else:
                if status == 200:
                    self._consumed(item)
                    return
                run.refused += 1
                self._log_failure(item, f"HTTP {status}")
            if not item.retry:
                return
            delay = min(self._cfg.retry_max_delay, self._cfg.retry_base_delay * 2 ** (attempt - 1))
            await asyncio.sleep(delay * (0.5 + self._rng.random() / 2))

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

    def _log_failure(self, item: Outgoing, what: str) -> None:
        if self._logged < LOGGED_FAILURES_PER_RUN:
            self._logged += 1
            log.warning(
                "run %s: delivery of %s (%s) failed: %s; retrying", self._run.run_id, item.event_id, item.kind, what
            )
