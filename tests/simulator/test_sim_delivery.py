"""Deliveries as Knit makes them: signed, one per record, retried until 200, then the run events."""

from __future__ import annotations

import threading
from typing import Any

from sim_receiver import API_KEY, Receiver, serve, signature_valid

from knit_simulator.testing import SimulatorProcess, run_simulator

ENVELOPE_KEYS = {"eventId", "eventType", "eventData", "syncType", "syncDataType", "syncJobId", "syncRunId"}


def _run_events(receiver: Receiver, run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    events = receiver.events_of_run(run_id)
    records = [e for e in events if e["eventType"].startswith("record.")]
    processed = [e for e in events if e["eventType"] == "sync.events.processed"]
    consumed = [e for e in events if e["eventType"] == "sync.events.allConsumed"]
    assert len(processed) == 1
    assert len(consumed) == 1
    return records, processed[0], consumed[0]


def test_initial_sync_delivers_every_application_signed_then_true_counts(
    simulator: SimulatorProcess, receiver: Receiver
) -> None:
    job_id = simulator.start_sync("int-initial", receiver.url)["data"]["syncJobId"]
    run = simulator.wait_job(job_id, timeout=60)["runs"][-1]
    deliveries = receiver.snapshot()
    assert deliveries
    for d in deliveries:
        assert signature_valid(d.body, d.headers.get("x-knit-signature"), API_KEY), d.body[:100]
        assert not signature_valid(d.body, d.headers.get("x-knit-signature"), API_KEY + "x")
        assert d.headers["x-knit-integration-id"] == "int-initial"
        assert d.headers["x-knit-execution-id"]
        assert d.headers["content-type"] == "application/json"

    records, processed, all_consumed = _run_events(receiver, run["syncRunId"])
    truth = simulator.truth("int-initial")
    assert len(records) == 60
    assert {r["recordId"] for r in records} == set(truth["applications"])
    assert len({r["eventId"] for r in records}) == 60
    for r in records:
        assert set(r) == ENVELOPE_KEYS | {"recordId"}
        assert (r["eventType"], r["syncType"], r["syncDataType"], r["syncJobId"]) == (
            "record.new",
            "initial_sync",
            "ats_applications",
            job_id,
        )
        assert r["eventData"] == truth["applications"][r["recordId"]]
        assert r["eventData"]["info"]["id"] == r["recordId"]

    data = all_consumed["eventData"]
    assert set(all_consumed) == ENVELOPE_KEYS
    assert (data["status"], data["complete"]) == ("completed", True)
    assert data["processed"] == data["emitted"] == data["consumed"] == 60
    assert (processed["eventData"]["status"], processed["eventData"]["complete"]) == ("processed", True)
    assert processed["eventData"]["emitted"] == 60
    for key in ("startedAt", "processedAt", "completedAt"):
        assert isinstance(data[key], str)
        assert data[key].isdigit()
        assert len(data[key]) == 13  # epoch milliseconds
    assert int(data["startedAt"]) <= int(data["processedAt"]) <= int(data["completedAt"])
    assert (run["emitted"], run["consumed"], run["state"]) == (60, 60, "completed")
    assert run["eventsByType"] == {"record.new": 60}


def test_only_subscribed_models_are_sent(simulator: SimulatorProcess, receiver: Receiver) -> None:
    job_id = simulator.start_sync("int-models", receiver.url, models=["application_stage", "application_offers"])
    run = simulator.wait_job(job_id["data"]["syncJobId"], timeout=60)["runs"][-1]
    records, _, _ = _run_events(receiver, run["syncRunId"])
    assert records
    assert all(set(r["eventData"]) == {"currentStage", "offers"} for r in records)


def test_refused_and_broken_deliveries_are_retried_until_200() -> None:
    """First answers are 500, 503, 202, 204, 400 or a hang-up, by event; only a 200 consumes."""
    refusals = (500, 503, 202, 204, 400, None)

    def policy(event_id: str | None, attempt: int, _body: bytes) -> int | None:
        if event_id is None:
            return 200
        kind = sum(event_id.encode()) % (len(refusals) + 1)
        if kind < len(refusals) and attempt <= 1 + kind % 2:
            return refusals[kind]
        return 200

    with (
        serve(policy) as receiver,
        run_simulator(applications=40, api_key=API_KEY, args=["--retry-base-delay", "0.01"]) as sim,
    ):
        job_id = sim.start_sync("int-retry", receiver.url)["data"]["syncJobId"]
        run = sim.wait_job(job_id, timeout=60)["runs"][-1]
        deliveries = receiver.snapshot()
        refused = [d for d in deliveries if d.answered != 200]
        assert {d.answered for d in refused} == set(refusals)
        records, _, all_consumed = _run_events(receiver, run["syncRunId"])
        assert len(records) == 40
        # every event that was refused came again and finally got its 200
        ok_ids = {d.event["eventId"] for d in deliveries if d.answered == 200 and d.event}
        assert {d.event["eventId"] for d in refused if d.event} <= ok_ids
        assert all_consumed["eventData"]["consumed"] == all_consumed["eventData"]["emitted"] == 40
        assert run["deliveryAttempts"] == len(deliveries)
        assert run["refused"] + run["connectionErrors"] == len(refused)
        assert run["failures"] == len(refused)


def test_all_consumed_waits_for_the_last_record_and_comes_after_it() -> None:
    """One event is refused until the test lets it through: no allConsumed may arrive before that."""
    held: dict[str, str] = {}
    release = threading.Event()

    def policy(event_id: str | None, _attempt: int, body: bytes) -> int | None:
        if b'"recordId":"80000007"' in body and not release.is_set():
            held.setdefault("event", event_id or "")
            return 503
        return 200

    with (
        serve(policy) as receiver,
        run_simulator(applications=30, api_key=API_KEY, args=["--retry-max-delay", "0.05"]) as sim,
    ):
        job_id = sim.start_sync("int-hold", receiver.url)["data"]["syncJobId"]
        # all other 29 records and the processed event are consumed, and the held one refused again
        receiver.wait_for(
            lambda ds: sum(1 for d in ds if d.answered == 200) >= 30 and sum(1 for d in ds if d.answered == 503) >= 3
        )
        seen = [d.event["eventType"] for d in receiver.snapshot() if d.event]
        assert "sync.events.allConsumed" not in seen
        run = sim.runs(job_id=job_id)[0]
        assert (run["complete"], run["consumed"], run["emitted"]) == (False, 29, 30)
        release.set()
        run = sim.wait_job(job_id, timeout=60)["runs"][-1]
        assert run["state"] == "completed"
        ordered = [d for d in receiver.snapshot() if d.answered == 200 and d.event]
        last_record = max(i for i, d in enumerate(ordered) if d.event["eventType"].startswith("record."))
        final = [i for i, d in enumerate(ordered) if d.event["eventType"] == "sync.events.allConsumed"]
        assert final == [len(ordered) - 1]
        assert final[0] > last_record
        assert ordered[last_record].event["eventId"] == held["event"]
        assert ordered[-1].event["eventData"]["consumed"] == 30


def test_deliveries_are_concurrent_up_to_the_limit() -> None:
    """With concurrency 8, eight deliveries are in flight at once, never more."""
    lock = threading.Lock()
    in_flight = [0, 0]  # now, peak
    eight = threading.Event()

    def policy(_event_id: str | None, _attempt: int, _body: bytes) -> int | None:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
            if in_flight[0] >= 8:
                eight.set()
        eight.wait(timeout=20)  # hold each delivery until eight are held together
        with lock:
            in_flight[0] -= 1
        return 200

    with serve(policy) as receiver, run_simulator(applications=24, api_key=API_KEY, args=["--concurrency", "8"]) as sim:
        job_id = sim.start_sync("int-concurrent", receiver.url)["data"]["syncJobId"]
        run = sim.wait_job(job_id, timeout=60)["runs"][-1]
        assert run["state"] == "completed"
        assert eight.is_set()
        assert in_flight[1] == 8


def test_an_answer_that_never_comes_on_an_open_connection_times_out_and_is_retried() -> None:
    """Keep-alive connection, earlier answers fine, then one request hangs past --request-timeout."""
    release = threading.Event()
    hung: list[str] = []

    def hang_once(event_id: str | None, attempt: int, _body: bytes) -> int | None:
        # The third distinct record's first attempt hangs: the connection has answered before, so
        # only the simulator's per-request deadline can free it.
        if event_id and attempt == 1 and not hung and len(seen) == 2:
            hung.append(event_id)
            release.wait(30)
        if event_id and event_id not in seen:
            seen.append(event_id)
        return 200

    seen: list[str] = []
    with (
        serve(hang_once) as receiver,
        run_simulator(
            applications=6, seed=5, api_key=API_KEY, args=["--concurrency", "1", "--request-timeout", "1"]
        ) as sim,
    ):
        try:
            job_id = sim.start_sync("int-hang", receiver.url)["data"]["syncJobId"]
            run = sim.wait_job(job_id, timeout=60)["runs"][-1]
        finally:
            release.set()

    assert hung, "no request was held"
    assert (run["state"], run["emitted"], run["consumed"]) == ("completed", 6, 6)
    answered = [d for d in receiver.snapshot() if d.event and d.event["eventId"] == hung[0]]
    assert len(answered) >= 2, "the hung event was not delivered again"
    assert run["failures"] >= 1
