"""The receiver's counts, as Prometheus metrics: the one source for the metrics endpoint and the log summary.

The metrics are module-level, as ``prometheus-client`` intends: one receiver per process. With
``--workers N`` the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the
workers start, so each worker's values live in files there and the supervisor serves their sum
(:func:`serve_metrics`). Hot paths only call ``inc`` on children bound here, never ``labels()``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("knit_provider.webhook.writer")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

EVENTS = Counter("knit_webhook_events", "Events committed by the writer, by result.", ["result"])
RESPONSES = Counter("knit_webhook_responses", "Answers sent by the standalone server, by HTTP status.", ["status"])
REJECTIONS = Counter("knit_webhook_rejections", "Requests refused without storing anything, by reason.", ["reason"])
BATCH_SIZE = Histogram(
    "knit_webhook_batch_size",
    "Events and dead letters per committed batch.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
COMMIT_SECONDS = Histogram(
    "knit_webhook_commit_seconds",
    "Time to land and commit one batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# livesum: with several workers, the sum over the workers alive now (a dead worker's files are removed).
QUEUE_DEPTH = Gauge(
    "knit_webhook_queue_depth", "Events waiting for a commit (sampled every second).", multiprocess_mode="livesum"
)
OPEN_CONNECTIONS = Gauge("knit_webhook_open_connections", "Client connections open now.", multiprocess_mode="livesum")
IDLE_CLOSED = Counter(
    "knit_webhook_idle_connections_closed", "Idle connections closed to make room for a new one at the connection cap."
)
# What the readiness probes no longer tell strangers: whether a writer reaches the database, and signing.
WRITERS_CONNECTED = Gauge(
    "knit_webhook_writers_connected",
    "Writer connections to the landing database (sampled every second); 0: the database is unreachable.",
    multiprocess_mode="livesum",
)
SIGNATURES_VERIFIED = Gauge(
    "knit_webhook_signatures_verified",
    "1 when signatures are verified, 0 in unsigned mode (with workers: 0 if any worker is unsigned).",
    multiprocess_mode="livemin",
)

NEW = EVENTS.labels("new")
DUPLICATE = EVENTS.labels("duplicate")
DEAD_LETTERED = EVENTS.labels("dead_lettered")
REJECTION_REASONS = (
    "signature",
    "size",
    "url",
    "header",
    "headers",
    "head",
    "head_timeout",
    "body_timeout",
    "connections",
    "address_connections",
    "memory_budget",
    "malformed",
    "queue_full",
)
REJECTED = {reason: REJECTIONS.labels(reason) for reason in REJECTION_REASONS}
_answered: dict[int, Any] = {}


def answered(status: int) -> None:
    """Count one answer (children are bound on first use: statuses are few)."""
    child = _answered.get(status)
    if child is None:
        child = _answered[status] = RESPONSES.labels(str(status))
    child.inc()


def _total(name: str, **labels: str) -> float:
    """This process's value of one sample (each worker logs its own summary)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class WriterStats:
    """The writer's side of the counts, and the periodic summary line computed from them."""

    def __init__(self) -> None:
        self._mark = (time.monotonic(), *self._totals())

    @staticmethod
    def _totals() -> tuple[float, float, float, float, float]:
        """Events (new + duplicate), batches, commit seconds, queue-full rejections, new events."""
        new = _total("knit_webhook_events_total", result="new")
        return (
            new + _total("knit_webhook_events_total", result="duplicate"),
            _total("knit_webhook_commit_seconds_count"),
            _total("knit_webhook_commit_seconds_sum"),
            _total("knit_webhook_rejections_total", reason="queue_full"),
            new,
        )

    def record(self, events: int, new: int, dead_letters: int, seconds: float) -> None:
        """One committed batch: ``events`` landed, ``new`` of them for the first time."""
        NEW.inc(new)
        DUPLICATE.inc(events - new)
        if dead_letters:
            DEAD_LETTERED.inc(dead_letters)
        BATCH_SIZE.observe(events + dead_letters)
        COMMIT_SECONDS.observe(seconds)

    def queue_full(self) -> None:
        REJECTED["queue_full"].inc()

    def summary(self, queue_depth: int) -> str | None:
        """Return the summary line since the last call, or ``None`` when nothing happened."""
        now = time.monotonic()
        since, events, batches, seconds, rejected, _ = self._mark
        totals = self._totals()
        self._mark = (now, *totals)
        total_events, total_batches, total_seconds, total_rejected, total_new = totals
        batches = total_batches - batches
        if batches == 0 and total_rejected == rejected:
            return None
        events = total_events - events
        dead_letters = _total("knit_webhook_events_total", result="dead_lettered")
        return (
            f"landed {events:.0f} events in {batches:.0f} batches: {events / max(now - since, 1e-9):.0f} events/s, "
            f"mean batch {events / max(batches, 1):.1f}, "
            f"mean commit {1000 * (total_seconds - seconds) / max(batches, 1):.1f} ms, "
            f"queue depth {queue_depth}, rejected (queue full) {total_rejected - rejected:.0f}; "
            f"total {total_events:.0f} events ({total_new:.0f} new), {dead_letters:.0f} dead letters"
        )

    async def report_forever(self, interval: float, queue_depth: Callable[[], int]) -> None:
        while True:
            await asyncio.sleep(interval)
            line = self.summary(queue_depth())
            if line:
                log.info("%s", line)


def serve_metrics(host: str, port: int) -> int:
    """Serve ``/metrics`` from a thread of this process; return the port (the kernel's choice for 0).

    In the supervisor of several workers (``PROMETHEUS_MULTIPROC_DIR`` set) it serves the workers'
    sum, read from their files at each scrape; otherwise this process's own registry.
    """
    registry = REGISTRY
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, directory)
    server, _thread = start_http_server(port, host, registry)
    return int(server.server_port)
