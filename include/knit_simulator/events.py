"""Build the webhook bodies of a run: Knit's envelope around each record, and the run events."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from knit_simulator.config import Readings, SimConfig
from knit_simulator.delta import RECORD_DELETED
from knit_simulator.rng import EventIds
from knit_simulator.runs import Run
from knit_simulator.sources import Source

EVENT_PROCESSED = "sync.events.processed"
EVENT_ALL_CONSUMED = "sync.events.allConsumed"
EVENT_ACTIVATE = "app.integration.activate"


@dataclass(slots=True)
class Outgoing:
    """One body to POST. ``counted``: a record event of this run (it counts as emitted/consumed)."""

    event_id: str
    body: bytes
    counted: bool
    retry: bool = True
    kind: str = "record"  # record | run-event | duplicate | late | invalid-json | unusable | activate


def record_events(
    run: Run,
    source: Source,
    changes: Iterable[tuple[str, int]],
    ids: EventIds,
    config: SimConfig,
    rng: random.Random,
) -> Iterator[Outgoing]:
    """Render each change when a delivery worker asks for it, so a million records never sit in memory."""
    job = run.job
    models = frozenset(job.models)
    sync_type, data_type, job_id, run_id = run.sync_type, job.data_type, job.job_id, run.run_id
    by_type = run.by_type
    dumps, new_id = orjson.dumps, ids.new
    render, render_deleted, record_id_of = source.event_data, source.deleted_data, source.record_id
    invalid_json_share, unusable_share = config.faults.invalid_json_share, config.faults.unusable_share
    for event_type, index in changes:
        event_data = render_deleted(index) if event_type == RECORD_DELETED else render(index, models)
        event_id = new_id()
        record_id = record_id_of(index)
        body = dumps(
            {
                "eventId": event_id,
                "eventType": event_type,
                "eventData": event_data,
                "syncType": sync_type,
                "syncDataType": data_type,
                "syncJobId": job_id,
                "syncRunId": run_id,
                "recordId": record_id,
            }
        )
        run.emitted += 1
        by_type[event_type] += 1
        if invalid_json_share and rng.random() < invalid_json_share:
            run.invalid_json_sent += 1
            yield Outgoing(event_id, truncated(body), counted=False, retry=False, kind="invalid-json")
        if unusable_share and rng.random() < unusable_share:
            run.unusable_record_ids.append(record_id)
            yield Outgoing(event_id, unusable(body, config.faults.unusable_kind), counted=True, kind="unusable")
            continue
        yield Outgoing(event_id, body, counted=True)


def truncated(body: bytes) -> bytes:
    """The first two thirds of a body: signed like any other, but not JSON."""
    return body[: max(1, len(body) * 2 // 3)]


def unusable(body: bytes, kind: str) -> bytes:
    """An authentic body in place of the event that no receiver can land: truncated, or without eventId."""
    if kind == "truncated":
        return truncated(body)
    event = orjson.loads(body)
    del event["eventId"]
    return orjson.dumps(event)


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


def activation_event(integration_id: str, errors: list[Any] | None, event_id: str, activated_at: int) -> Outgoing:
    """``app.integration.activate``: outside any sync, so no syncType, syncJobId or syncRunId.

    Knit's glossary only says it follows an integration's validation and "may contain validation
    errors"; the ``eventData`` keys here are the simulator's guess, ``activatedAt`` (epoch
    milliseconds as a string, like the run events' times) included.
    """
    event_data: dict[str, Any] = {"integrationId": integration_id, "activatedAt": str(activated_at)}
    if errors:
        event_data["errors"] = errors
    body = orjson.dumps({"eventId": event_id, "eventType": EVENT_ACTIVATE, "eventData": event_data})
    return Outgoing(event_id, body, counted=False, kind="activate")


# Some JSON writers (Gson, by default) escape these "HTML-unsafe" characters even inside strings.
_HTML_SAFE = {ord(c): f"\\u{ord(c):04x}" for c in "<>&='"}


def restyler(readings: Readings) -> Callable[[bytes], tuple[bytes, bytes]] | None:
    """Return how bodies leave: None for compact JSON signed as sent, the hot path.

    Otherwise a function of a body that returns the bytes to send and the bytes to sign.
    """
    spaced, escaped, sign_compact = readings.spaced_json, readings.escaped_json, readings.sign_compact
    if not (spaced or escaped or sign_compact):
        return None
    separators = (", ", ": ") if spaced else (",", ":")

    def restyle(body: bytes) -> tuple[bytes, bytes]:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:  # a truncated body cannot be re-serialised: sent and signed as is
            return body, body
        sent = body
        if spaced or escaped:
            text = json.dumps(document, ensure_ascii=escaped, separators=separators)
            sent = (text.translate(_HTML_SAFE) if escaped else text).encode()
        # The compact form is what JSON.stringify of the parsed body gives (orjson writes the same).
        return sent, orjson.dumps(document) if sign_compact else sent

    return restyle
