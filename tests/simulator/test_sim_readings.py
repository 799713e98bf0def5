"""Behaviours Knit's pages allow beyond the usual guess, each behind a flag (docs/internals.md lists them).

Quiet runs, progress reports, authentic but unusable bodies, ``app.integration.activate``, deletes
with empty ids, bodies signed as sent or as compact JSON, and a retry window that ends.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from sim_receiver import API_KEY, Delivery, Policy, Receiver, always_ok, serve, signature_valid

from knit_simulator.testing import SimulatorError, SimulatorProcess, run_simulator

PROCESSED, ALL_CONSUMED = "sync.events.processed", "sync.events.allConsumed"


@contextmanager
def _world(
    args: Sequence[str],
    applications: int = 40,
    policy: Policy = always_ok,
) -> Iterator[tuple[SimulatorProcess, Receiver]]:
    with (
        serve(policy) as receiver,
        run_simulator(
            applications=applications, seed=9, api_key=API_KEY, args=["--retry-base-delay", "0.01", *args]
        ) as sim,
    ):
        yield sim, receiver


def _initial(sim: SimulatorProcess, receiver: Receiver, integration: str = "int-r") -> tuple[str, dict[str, Any]]:
    job_id = sim.start_sync(integration, receiver.url)["data"]["syncJobId"]
    return job_id, sim.wait_job(job_id, timeout=60)["runs"][-1]


def _of_type(receiver: Receiver, run_id: str, event_type: str) -> list[dict[str, Any]]:
    return [e for e in receiver.events_of_run(run_id) if e["eventType"] == event_type]


def _compact(body: bytes) -> bytes:
    """``JSON.stringify(JSON.parse(body))``, written without the simulator's serialiser."""
    return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()


# ---- a. runs with no change ------------------------------------------------------------------
def test_a_quiet_run_sends_processed_with_emitted_zero_then_all_consumed_by_default() -> None:
    with _world([]) as (sim, receiver):
        job_id, _ = _initial(sim, receiver)
        run = sim.wait_run(sim.trigger_run(job_id, delta_share=0)["syncRunId"], timeout=60)
        events = receiver.events_of_run(run["syncRunId"])
        assert [e["eventType"] for e in events] == [PROCESSED, ALL_CONSUMED]
        processed = events[0]["eventData"]
        assert (processed["complete"], processed["emitted"], processed["processed"]) == (True, 0, 40)
        assert (events[1]["eventData"]["emitted"], events[1]["eventData"]["consumed"]) == (0, 0)
        assert (run["state"], run["emitted"], run["allConsumedEventId"]) == ("completed", 0, events[1]["eventId"])


def test_skip_empty_all_consumed_sends_only_the_final_processed_of_a_quiet_run() -> None:
    with _world(["--skip-empty-all-consumed"]) as (sim, receiver):
        job_id, initial = _initial(sim, receiver)
        assert len(_of_type(receiver, initial["syncRunId"], ALL_CONSUMED)) == 1  # it emitted 40: unchanged
        quiet = sim.wait_run(sim.trigger_run(job_id, delta_share=0)["syncRunId"], timeout=60)
        events = receiver.events_of_run(quiet["syncRunId"])
        assert [(e["eventType"], e["eventData"]["complete"], e["eventData"]["emitted"]) for e in events] == [
            (PROCESSED, True, 0)
        ]
        assert (quiet["state"], quiet["complete"], quiet["allConsumedEventId"]) == ("completed", True, None)
        assert quiet["processedEventId"] == events[0]["eventId"]
        # the flag is the default; one run may ask for the other reading
        loud = sim.wait_run(sim.trigger_run(job_id, delta_share=0, skip_empty_all_consumed=False)["syncRunId"])
        assert [e["eventType"] for e in receiver.events_of_run(loud["syncRunId"])] == [PROCESSED, ALL_CONSUMED]


def test_run_overrides_are_checked() -> None:
    with _world([]) as (sim, receiver):
        job_id, _ = _initial(sim, receiver)
        for bad in ({"delta_share": 1.5}, {"delta_share": -0.1}):
            with pytest.raises(SimulatorError, match="deltaShare"):
                sim.trigger_run(job_id, **bad)  # type: ignore[arg-type]


# ---- b. processed repeated as progress reports -----------------------------------------------
def test_progress_reports_come_evenly_then_the_final_processed() -> None:
    with _world(["--progress-events", "3", "--concurrency", "1"]) as (sim, receiver):
        job_id, run = _initial(sim, receiver)
        processed = [e["eventData"] for e in _of_type(receiver, run["syncRunId"], PROCESSED)]
        assert [p["complete"] for p in processed] == [False, False, False, True]
        assert [p["emitted"] for p in processed] == [10, 20, 30, 40]
        assert [p["processed"] for p in processed] == [10, 20, 30, 40]
        assert all(p["status"] == "processed" and p["processedAt"].isdigit() for p in processed)
        assert len(run["processedEventIds"]) == 4
        assert run["processedEventId"] == run["processedEventIds"][-1]

        # Knit's own sample: a progress report with processed > 0 and emitted 0, in a quiet run
        quiet = sim.wait_run(sim.trigger_run(job_id, delta_share=0)["syncRunId"], timeout=60)
        reports = [e["eventData"] for e in _of_type(receiver, quiet["syncRunId"], PROCESSED)]
        assert [(p["complete"], p["emitted"]) for p in reports] == [(False, 0)] * 3 + [(True, 0)]
        assert [p["processed"] for p in reports] == [10, 20, 30, 40]


def test_progress_events_without_a_count_is_one_report_halfway() -> None:
    with _world(["--progress-events", "--concurrency", "1"]) as (sim, receiver):
        _, run = _initial(sim, receiver)
        processed = [e["eventData"] for e in _of_type(receiver, run["syncRunId"], PROCESSED)]
        assert [(p["complete"], p["emitted"]) for p in processed] == [(False, 20), (True, 40)]


# ---- c. authentic bodies no receiver can use, retried until 200 --------------------------------
def _usable(body: bytes) -> bool:
    try:
        event = json.loads(body)
    except ValueError:
        return False
    return isinstance(event, dict) and bool(event.get("eventId"))


def _refuse_unusable_three_times(_event_id: str | None, attempt: int, body: bytes) -> int | None:
    """Today's receiver answers 400 to such a body; this one gives in on the fourth attempt."""
    return 200 if _usable(body) or attempt > 3 else 400


@pytest.mark.parametrize("kind", ["truncated", "no-event-id"])
def test_unusable_bodies_take_their_events_place_and_are_retried_until_200(kind: str) -> None:
    with _world(["--unusable-share", "0.3", "--unusable-kind", kind], policy=_refuse_unusable_three_times) as (
        sim,
        receiver,
    ):
        _, run = _initial(sim, receiver)
        deliveries = receiver.snapshot()
        unusable = [d for d in deliveries if not _usable(d.body)]
        tries = Counter(d.body for d in unusable)
        assert len(tries) == run["unusableSent"] == len(run["unusableRecordIds"]) > 3
        assert set(tries.values()) == {4}  # refused three times, answered 200 once, never sent again
        assert [d.answered for d in unusable if d.body == unusable[0].body] == [400, 400, 400, 200]
        assert all(signature_valid(d.body, d.headers["x-knit-signature"], API_KEY) for d in unusable)
        if kind == "no-event-id":  # still readable: the run and the record can be named
            events = [json.loads(body) for body in tries]
            assert {e["syncRunId"] for e in events} == {run["syncRunId"]}
            assert sorted(e["recordId"] for e in events) == sorted(run["unusableRecordIds"])
            assert all("eventId" not in e for e in events)
        # they count as emitted and consumed: allConsumed comes, and says so
        records = [e for e in receiver.events_of_run(run["syncRunId"]) if e["eventType"].startswith("record.")]
        assert {e["recordId"] for e in records}.isdisjoint(run["unusableRecordIds"])
        assert len(records) + run["unusableSent"] == 40
        final = _of_type(receiver, run["syncRunId"], ALL_CONSUMED)[0]["eventData"]
        assert final["emitted"] == final["consumed"] == run["emitted"] == run["consumed"] == 40


# ---- d. app.integration.activate, outside any run ----------------------------------------------
def test_activate_is_signed_carries_no_run_ids_and_is_retried_until_200() -> None:
    def refuse_activation_twice(_event_id: str | None, attempt: int, body: bytes) -> int | None:
        return 503 if b"app.integration.activate" in body and attempt <= 2 else 200

    with _world([], policy=refuse_activation_twice) as (sim, receiver):
        errors = [{"code": "INVALID_CREDENTIALS", "msg": "token expired"}]
        notice = sim.wait_notice(sim.activate("int-act", errors=errors, destination=receiver.url)["eventId"])
        assert (notice["state"], notice["deliveryAttempts"], notice["refused"]) == ("delivered", 3, 2)
        sent = [d for d in receiver.snapshot() if d.event and d.event["eventType"] == "app.integration.activate"]
        assert [d.answered for d in sent] == [503, 503, 200]
        event = sent[-1].event
        assert event is not None
        assert set(event) == {"eventId", "eventType", "eventData"}  # no syncType, syncJobId, syncRunId
        activated_at = event["eventData"]["activatedAt"]
        assert activated_at.isdigit(), "epoch milliseconds as a string, like the run events' times"
        assert event == {
            "eventId": notice["eventId"],
            "eventType": "app.integration.activate",
            "eventData": {"integrationId": "int-act", "activatedAt": activated_at, "errors": errors},
        }
        assert sent[-1].headers["x-knit-integration-id"] == "int-act"
        assert signature_valid(sent[-1].body, sent[-1].headers["x-knit-signature"], API_KEY)

        # without errors there is no errors key; the destination defaults to the integration's job
        _initial(sim, receiver, "int-act2")
        clean = sim.wait_notice(sim.activate("int-act2")["eventId"])
        assert clean["destination"] == receiver.url
        delivered = [d.event for d in receiver.consumed() if d.event and d.event["eventId"] == clean["eventId"]]
        assert set(delivered[0]["eventData"]) == {"integrationId", "activatedAt"}
        assert [n["eventId"] for n in sim.notices("int-act2")] == [clean["eventId"]]


def test_connecting_an_integration_creates_it_and_its_syncs_are_served() -> None:
    with _world([]) as (sim, receiver):
        old = sim.wait_notice(
            sim.activate("int-new", destination=receiver.url, activated_at=1_700_000_000_000)["eventId"]
        )
        assert old["state"] == "delivered"
        (sent,) = [d.event for d in receiver.consumed() if d.event and d.event["eventId"] == old["eventId"]]
        assert sent["eventData"] == {"integrationId": "int-new", "activatedAt": "1700000000000"}
        assert sim.truth("int-new")["count"] == 40, "the connected integration holds the seeded data set"
        _, run = _initial(sim, receiver, "int-new")
        assert (run["state"], run["syncType"], run["emitted"]) == ("completed", "initial_sync", 40)


def test_activate_without_a_destination_is_refused() -> None:
    with _world([]) as (sim, _):
        with pytest.raises(SimulatorError, match="destination"):
            sim.activate("int-nowhere")
        request = urllib.request.Request(
            sim.base_url + "/_sim/integrations/int-x/activate",
            method="POST",
            data=b'{"errors": "bad", "destination": "http://x/"}',
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 400
        assert "errors must be a list" in err.value.read().decode()


# ---- e. deletes as Knit's page prints them ---------------------------------------------------
def test_empty_deleted_ids_blank_the_three_ids_and_keep_the_record_id() -> None:
    with _world(["--empty-deleted-ids", "--delta-share", "0.4"]) as (sim, receiver):
        job_id, _ = _initial(sim, receiver, "int-del")
        run = sim.wait_run(sim.trigger_run(job_id)["syncRunId"], timeout=60)
        deleted = _of_type(receiver, run["syncRunId"], "record.deleted")
        assert deleted
        truth = sim.truth("int-del")
        for event in deleted:
            assert event["eventData"] == {"applicationId": "", "candidateId": "", "jobId": ""}
            # the truth keeps the ids the application had: what a correct pipeline still shows
            assert truth["deleted"][event["recordId"]]["applicationId"] == event["recordId"]
            assert truth["deleted"][event["recordId"]]["candidateId"]


def test_silent_deletes_leave_deletions_to_the_next_initial_sync() -> None:
    with _world(["--silent-deletes", "--delta-share", "0.4"]) as (sim, receiver):
        job_id, initial = _initial(sim, receiver, "int-silent")
        delta = sim.wait_run(sim.trigger_run(job_id)["syncRunId"], timeout=60)
        assert not _of_type(receiver, delta["syncRunId"], "record.deleted")
        deleted = set(sim.truth("int-silent")["deleted"])
        assert deleted, "a 0.4 delta of 40 applications deletes some"
        resync = sim.start_sync("int-silent", receiver.url, sync_type="initial_sync")["data"]["syncJobId"]
        snapshot = sim.wait_job(resync, timeout=60)["runs"][-1]
        sent = {e["recordId"] for e in _of_type(receiver, snapshot["syncRunId"], "record.new")}
        firsts = {e["recordId"] for e in _of_type(receiver, initial["syncRunId"], "record.new")}
        assert deleted <= firsts
        assert not deleted & sent


# ---- f. bodies that are not compact JSON, signed as sent or as compact JSON ----------------------
@pytest.mark.parametrize(
    ("flags", "spaced", "escaped"),
    [
        (["--spaced-json"], True, False),
        (["--escaped-json"], False, True),
        (["--spaced-json", "--escaped-json"], True, True),
    ],
)
def test_non_compact_bodies_are_signed_over_the_bytes_sent(flags: list[str], spaced: bool, escaped: bool) -> None:
    with _world(flags) as (sim, receiver):
        _initial(sim, receiver)
        deliveries = receiver.snapshot()
        differ = [d for d in deliveries if d.body != _compact(d.body)]
        if spaced:
            assert len(differ) == len(deliveries)
        else:  # escaping changes only bodies with = & < > ' or non-ASCII: those with attachment links
            assert 10 < len(differ) < len(deliveries)
        for d in deliveries:
            assert signature_valid(d.body, d.headers["x-knit-signature"], API_KEY)
            assert (b'", "' in d.body) is spaced
            if escaped:
                assert b"=" not in d.body
                assert b"&" not in d.body
        if escaped:
            assert any(b"\\u003d" in d.body and b"\\u0026" in d.body for d in deliveries)


def test_sign_compact_signs_json_stringify_of_the_body_not_the_bytes_sent() -> None:
    with _world(["--escaped-json", "--sign-compact"]) as (sim, receiver):
        _, run = _initial(sim, receiver)
        deliveries: list[Delivery] = receiver.snapshot()
        differ = [d for d in deliveries if d.body != _compact(d.body)]
        same = [d for d in deliveries if d.body == _compact(d.body)]
        assert differ
        assert same
        for d in deliveries:
            assert signature_valid(_compact(d.body), d.headers["x-knit-signature"], API_KEY)
        for d in differ:
            assert not signature_valid(d.body, d.headers["x-knit-signature"], API_KEY)
        assert run["consumed"] == 40


# ---- g. a retry window that ends ---------------------------------------------------------------
def test_an_event_refused_past_the_retry_window_is_given_up_and_all_consumed_never_comes() -> None:
    refused_record = "80000007"

    def refuse_one_record(_event_id: str | None, _attempt: int, body: bytes) -> int | None:
        return 503 if f'"recordId":"{refused_record}"'.encode() in body else 200

    args = ["--retry-window-seconds", "0.5", "--retry-max-delay", "0.1"]
    with _world(args, applications=20, policy=refuse_one_record) as (sim, receiver):
        job_id, run = _initial(sim, receiver)
        assert (run["state"], run["complete"], run["emitted"], run["consumed"]) == ("gave_up", True, 20, 19)
        (given_up,) = run["givenUp"]
        tries = [d for d in receiver.snapshot() if refused_record.encode() in d.body]
        assert given_up == {
            "eventId": tries[0].event["eventId"] if tries[0].event else None,
            "eventType": "record.new",
            "recordId": refused_record,
            "kind": "record",
            "attempts": len(tries),
        }
        assert 2 <= len(tries) <= 30  # retried within the window, then no more
        assert all(d.answered == 503 for d in tries)
        assert _of_type(receiver, run["syncRunId"], ALL_CONSUMED) == []
        assert run["allConsumedEventId"] is None
        assert len(_of_type(receiver, run["syncRunId"], PROCESSED)) == 1
        # the job is free again: the next run starts and finishes
        assert not sim.wait_job(job_id)["busy"]


def test_a_notice_to_a_dead_destination_is_given_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/knit"
    with _world(["--retry-window-seconds", "0.3"]) as (sim, _):
        notice = sim.wait_notice(sim.activate("int-dead", destination=dead)["eventId"], timeout=30)
        assert notice["state"] == "gave_up"
        assert notice["connectionErrors"] == notice["deliveryAttempts"] >= 2
        assert [g["eventType"] for g in notice["givenUp"]] == ["app.integration.activate"]


def test_without_a_window_an_event_is_retried_for_as_long_as_it_takes() -> None:
    release = threading.Event()

    def refuse_until_released(_event_id: str | None, _attempt: int, body: bytes) -> int | None:
        return 503 if b'"recordId":"80000003"' in body and not release.is_set() else 200

    with _world(["--retry-max-delay", "0.05"], applications=10, policy=refuse_until_released) as (sim, receiver):
        job_id = sim.start_sync("int-forever", receiver.url)["data"]["syncJobId"]
        receiver.wait_for(lambda ds: sum(1 for d in ds if d.answered == 503) >= 20)
        assert sim.runs(job_id=job_id)[0]["state"] in ("running", "processed")
        release.set()
        run = sim.wait_job(job_id, timeout=60)["runs"][-1]
        assert (run["state"], run["givenUp"], run["consumed"]) == ("completed", [], 10)
