"""Sync jobs and their runs, as the simulator tracks them (and reports them on ``/_sim/runs``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from knit_simulator.http_client import Target

QUEUED, RUNNING, PROCESSED, COMPLETED, FAILED = "queued", "running", "processed", "completed", "failed"
GAVE_UP = "gave_up"  # finished, but some event's retry window ended before it got its 200
DELIVERING, DELIVERED = "delivering", "delivered"  # states of a notice (an event outside any run)
FINISHED = (COMPLETED, FAILED, GAVE_UP)
# What queued a run: Knit's automatic initial sync on connection, its scheduler, sync.start,
# sync.update with new models, or /_sim/jobs/{id}/run.
ACTIVATION, SCHEDULE, API, UPDATE, CONTROL = "activation", "schedule", "api", "update", "control"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Job:
    """A sync job: one per (integration, data type), as ``sync.start`` returns its ``syncJobId``."""

    job_id: str
    integration_id: str
    data_type: str
    models: list[str]
    destination: str
    target: Target
    frequency: str = "standard"
    settings: dict[str, Any] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # A few bodies of the last finished run, for the late re-delivery fault.
    recent_bodies: list[bytes] = field(default_factory=list)
    # Epoch ms of the next scheduled delta; None until the job's first run finishes or while its
    # frequency has no interval. ``rescheduled`` wakes the job's scheduler when it moves.
    next_delta_at: int | None = None
    rescheduled: asyncio.Event = field(default_factory=asyncio.Event)
    # Inactive applications an initial sync of this job sent as record.new (includeInactiveRecords):
    # a receiver holds them again after the record.deleted of their inactivation.
    resent_inactive: set[int] = field(default_factory=set)

    def reschedule(self, at: int | None) -> None:
        self.next_delta_at = at
        self.rescheduled.set()

    def busy(self) -> bool:
        return any(run.state not in FINISHED for run in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "syncJobId": self.job_id,
            "integrationId": self.integration_id,
            "dataType": self.data_type,
            "models": self.models,
            "destination": self.destination,
            "frequency": self.frequency,
            "settings": self.settings,
            "nextDeltaAt": self.next_delta_at,
            "busy": self.busy(),
            "runs": [run.to_dict() for run in self.runs],
        }


@dataclass
class Run:
    """One sync run and the truth about its deliveries."""

    run_id: str
    job: Job
    sync_type: str
    delta_share: float  # share of live applications this run's delta changes (0: a quiet run)
    skip_empty_all_consumed: bool  # with no record event emitted, send no allConsumed
    origin: str  # activation | schedule | api | update | control
    honor_scheduler: bool = False  # sync.start's honorScheduler: false moves the job's next scheduled delta
    requested_at: int = field(default_factory=now_ms)
    state: str = QUEUED
    error: str | None = None
    started_at: int | None = None
    processed_at: int | None = None
    completed_at: int | None = None
    processed: int = 0  # records read from the source
    emitted: int = 0  # distinct record events the run sent
    consumed: int = 0  # record events answered with HTTP 200
    by_type: Counter[str] = field(default_factory=Counter)
    attempts: int = 0  # every HTTP request made, retries and fault extras included
    refused: int = 0  # answers other than 200
    connection_errors: int = 0  # no answer: refused, reset, timed out, not HTTP
    dropped: int = 0  # connections the simulator cut on purpose
    duplicates_sent: int = 0
    late_redeliveries_sent: int = 0
    invalid_json_sent: int = 0
    unusable_record_ids: list[str] = field(default_factory=list)  # records sent as unusable bodies
    given_up: list[dict[str, Any]] = field(default_factory=list)  # events whose retry window ended
    processed_event_ids: list[str] = field(default_factory=list)  # progress reports, then the final one
    all_consumed_event_id: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def complete(self) -> bool:
        return self.state in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "syncRunId": self.run_id,
            "syncJobId": self.job.job_id,
            "integrationId": self.job.integration_id,
            "dataType": self.job.data_type,
            "syncType": self.sync_type,
            "origin": self.origin,
            "state": self.state,
            "complete": self.complete,
            "error": self.error,
            "requestedAt": self.requested_at,
            "startedAt": self.started_at,
            "processedAt": self.processed_at,
            "completedAt": self.completed_at,
            "processed": self.processed,
            "emitted": self.emitted,
            "consumed": self.consumed,
            "eventsByType": dict(self.by_type),
            "deliveryAttempts": self.attempts,
            "failures": self.refused + self.connection_errors + self.dropped,
            "refused": self.refused,
            "connectionErrors": self.connection_errors,
            "dropped": self.dropped,
            "duplicatesSent": self.duplicates_sent,
            "lateRedeliveriesSent": self.late_redeliveries_sent,
            "invalidJsonSent": self.invalid_json_sent,
            "unusableSent": len(self.unusable_record_ids),
            "unusableRecordIds": self.unusable_record_ids,
            "givenUp": self.given_up,
            "processedEventId": self.processed_event_ids[-1] if self.processed_event_ids else None,
            "processedEventIds": self.processed_event_ids,
            "allConsumedEventId": self.all_consumed_event_id,
        }


@dataclass
class StartCall:
    """One ``sync.start`` call as the simulator received it, for ``/_sim/starts``."""

    integration_id: str
    data_type: str | None
    sync_type: str | None
    body_keys: list[str]
    received_at: int = field(default_factory=now_ms)
    status: int | None = None  # the HTTP status decided; the answer may still be dropped
    run_id: str | None = None
    answered: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "integrationId": self.integration_id,
            "dataType": self.data_type,
            "syncType": self.sync_type,
            "bodyKeys": self.body_keys,
            "receivedAt": self.received_at,
            "status": self.status,
            "runId": self.run_id,
            "answered": self.answered,
        }


@dataclass
class Notice:
    """An event outside any sync run (``app.integration.activate``) and the truth about its delivery."""

    event_id: str
    event_type: str
    integration_id: str
    destination: str
    state: str = DELIVERING
    attempts: int = 0
    refused: int = 0
    connection_errors: int = 0
    dropped: int = 0
    given_up: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def complete(self) -> bool:
        return self.state != DELIVERING

    def to_dict(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "integrationId": self.integration_id,
            "destination": self.destination,
            "state": self.state,
            "complete": self.complete,
            "deliveryAttempts": self.attempts,
            "refused": self.refused,
            "connectionErrors": self.connection_errors,
            "dropped": self.dropped,
            "givenUp": self.given_up,
        }
