"""Build the webhook bodies of a run: Knit's envelope around each record, and the run events."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from knit_simulator.dataset import IntegrationData
from knit_simulator.delta import RECORD_DELETED
from knit_simulator.render import Renderer
from knit_simulator.rng import EventIds
from knit_simulator.runs import Run

EVENT_PROCESSED = "sync.events.processed"
EVENT_ALL_CONSUMED = "sync.events.allConsumed"


@dataclass(slots=True)
class Outgoing:
    """One body to POST. ``counted``: a record event of this run (it counts as emitted/consumed)."""

    event_id: str
    body: bytes
    counted: bool
    retry: bool = True
    kind: str = "record"  # record | run-event | duplicate | late | invalid-json


def record_events(
    run: Run,
    data: IntegrationData,
    renderer: Renderer,
    changes: Iterable[tuple[str, int]],
    ids: EventIds,
    invalid_json_share: float,
    rng: random.Random,
) -> Iterator[Outgoing]:
    """Render each change when a delivery worker asks for it, so a million records never sit in memory."""
    job = run.job
    models = frozenset(job.models)
    sync_type, data_type, job_id, run_id = run.sync_type, job.data_type, job.job_id, run.run_id
    by_type = run.by_type
    dumps, state_of, new_id = orjson.dumps, data.state, ids.new
    for event_type, index in changes:
        state = state_of(index)
        if event_type == RECORD_DELETED:
            event_data = renderer.deleted_data(state)
        else:
            event_data = renderer.event_data(state, models)
        event_id = new_id()
        body = dumps(
            {
                "eventId": event_id,
                "eventType": event_type,
                "eventData": event_data,
                "syncType": sync_type,
                "syncDataType": data_type,
                "syncJobId": job_id,
                "syncRunId": run_id,
                "recordId": data.application_id(index),
            }
        )
        run.emitted += 1
        by_type[event_type] += 1
        if invalid_json_share and rng.random() < invalid_json_share:
            run.invalid_json_sent += 1
            yield Outgoing(
                event_id, body[: max(1, len(body) * 2 // 3)], counted=False, retry=False, kind="invalid-json"
            )
        yield Outgoing(event_id, body, counted=True)


def run_event(run: Run, event_type: str, event_data: dict[str, Any], event_id: str) -> Outgoing:
    """A ``sync.events.*`` event of the run (no ``recordId``)."""
    job = run.job
    body = orjson.dumps(
        {
            "eventId": event_id,
            "eventType": event_type,
            "eventData": event_data,
            "syncType": run.sync_type,
            "syncDataType": job.data_type,
            "syncJobId": job.job_id,
            "syncRunId": run.run_id,
        }
    )
    return Outgoing(event_id, body, counted=False, kind="run-event")


def processed_data(run: Run, complete: bool) -> dict[str, Any]:
    return {
        "status": "processed",
        "processed": run.processed,
        "emitted": run.emitted,
        "startedAt": str(run.started_at),
        "processedAt": str(run.processed_at),
        "complete": complete,
    }


def all_consumed_data(run: Run) -> dict[str, Any]:
    return {
        "status": "completed",
        "processed": run.processed,
        "emitted": run.emitted,
        "consumed": run.consumed,
        "completedAt": str(run.completed_at),
        "startedAt": str(run.started_at),
        "processedAt": str(run.processed_at),
        "complete": True,
    }
