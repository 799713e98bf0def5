"""Throughput figures of the writer, summarised in the log at a fixed interval."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger("knit_provider.webhook.writer")


class WriterStats:
    """Counters since start and since the last summary (one writer process)."""

    def __init__(self) -> None:
        self.events = 0
        self.new_events = 0
        self.dead_letters = 0
        self.batches = 0
        self.commit_seconds = 0.0
        self.rejected_full = 0
        self._mark = (time.monotonic(), 0, 0, 0.0, 0)

    def record(self, events: int, new: int, dead_letters: int, seconds: float) -> None:
        self.events += events
        self.new_events += new
        self.dead_letters += dead_letters
        self.batches += 1
        self.commit_seconds += seconds

    def summary(self, queue_depth: int) -> str | None:
        """Return the summary line since the last call, or ``None`` when nothing happened."""
        now = time.monotonic()
        since, events, batches, seconds, rejected = self._mark
        self._mark = (now, self.events, self.batches, self.commit_seconds, self.rejected_full)
        batches = self.batches - batches
        if batches == 0 and self.rejected_full == rejected:
            return None
        events = self.events - events
        return (
            f"landed {events} events in {batches} batches: {events / max(now - since, 1e-9):.0f} events/s, "
            f"mean batch {events / max(batches, 1):.1f}, "
            f"mean commit {1000 * (self.commit_seconds - seconds) / max(batches, 1):.1f} ms, "
            f"queue depth {queue_depth}, rejected (queue full) {self.rejected_full - rejected}; "
            f"total {self.events} events ({self.new_events} new), {self.dead_letters} dead letters"
        )

    async def report_forever(self, interval: float, queue_depth: Callable[[], int]) -> None:
        while True:
            await asyncio.sleep(interval)
            line = self.summary(queue_depth())
            if line:
                log.info("%s", line)
