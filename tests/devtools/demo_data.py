"""Small Knit runs of applications and jobs, landed through ``land_events`` as the receiver lands them, for
the tests of the demo and its report."""

from __future__ import annotations

from typing import Any

from knit_landing_helpers import Lander, ids

# (event type, record id, eventData)
Record = tuple[str, str, dict[str, Any]]


def application(app_id: str, job_id: str) -> Record:
    """A new application to ``job_id``: the fields the report reads, the rest as Knit may leave them."""
    info = {"id": app_id, "status": "ACTIVE", "jobId": job_id, "candidate": {"id": f"c-{app_id}"}}
    return "record.new", app_id, {"info": info, "currentStage": {"id": "s1", "name": "Screen"}}


def application_deleted(app_id: str, job_id: str) -> Record:
    return "record.deleted", app_id, {"applicationId": app_id, "candidateId": f"c-{app_id}", "jobId": job_id}


def job(job_id: str, title: str, department: str) -> Record:
    """A new open job with one department and one office."""
    data = {
        "info": {"id": job_id, "title": title, "status": "OPEN"},
        "departments": [{"id": f"d-{department}", "name": department}],
        "offices": [{"id": "o1", "name": "Berlin", "location": "Berlin, DE"}],
        "hiringManagers": [],
        "recruiters": [],
        "stages": [],
    }
    return "record.new", job_id, data


def job_closed(job_id: str) -> Record:
    """Knit sends a closed job as record.deleted."""
    return "record.deleted", job_id, {"jobId": job_id}


def land_run(url: str, integration_id: str, data_type: str, sync_type: str, records: list[Record]) -> str:
    """Land one complete run (its record events, then Knit's allConsumed counting them); return its run id."""
    lander = Lander(url, integration_id, data_type)
    try:
        sync_job, run = ids(data_type)
        events = [lander.event(event_type, sync_job, run, data, record_id) for event_type, record_id, data in records]
        count = str(len(records))
        counts = {"processed": count, "emitted": count, "consumed": count}
        times = {"startedAt": "1714557600000", "processedAt": "1714557660000", "completedAt": "1714557720000"}
        done = {"status": "SUCCESS", **counts, **times, "complete": True}
        events.append(lander.event("sync.events.allConsumed", sync_job, run, done))
        lander.land([{**event, "syncType": sync_type} for event in events])
    finally:
        lander.close()
    return run
