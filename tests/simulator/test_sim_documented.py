"""The simulator as Knit's reference documents it, and each other reading behind its flag.

The category webhook, the initial sync Knit starts on connection, deltas on the job's
frequency, ``honorScheduler``, inactive records, ``sync.start``'s documented body, a new
execution id per dispatch, dropped ``sync.start`` answers and the simulator's record of its calls
and runs (``docs/internals.md``, "What the simulator guesses").
"""

from __future__ import annotations

import http.client
import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from sim_receiver import API_KEY, Policy, Receiver, always_ok, serve

from knit_simulator.config import FREQUENCIES, parse_args
from knit_simulator.render import ALL_MODELS
from knit_simulator.testing import SimulatorProcess, run_simulator

ACTIVATE = "app.integration.activate"
ALL_CONSUMED = "sync.events.allConsumed"


@contextmanager
def _world(
    args: Sequence[str], applications: int = 20, policy: Policy = always_ok
) -> Iterator[tuple[SimulatorProcess, Receiver]]:
    """A simulator whose ATS category webhook is a receiver in this process."""
    with (
        serve(policy) as receiver,
        run_simulator(
            applications=applications,
            seed=13,
            api_key=API_KEY,
            args=["--retry-base-delay", "0.01", "--destination", receiver.url, *args],
        ) as sim,
    ):
        yield sim, receiver


def _connect(sim: SimulatorProcess, integration: str) -> dict[str, Any]:
    """Activate the integration and return its applications sync job once every job Knit started is idle
    (one per data type of ``--data-types``)."""
    sim.wait_notice(sim.activate(integration)["eventId"])
    jobs = {run["dataType"]: sim.wait_job(run["syncJobId"], timeout=60) for run in sim.runs(integration_id=integration)}
    assert sorted(jobs) == ["ats_applications", "ats_jobs"]
    return jobs["ats_applications"]


def _records(receiver: Receiver, run_id: str, event_type: str) -> dict[str, dict[str, Any]]:
    return {e["recordId"]: e["eventData"] for e in receiver.events_of_run(run_id) if e["eventType"] == event_type}


# ---- 1. the category webhook -----------------------------------------------------------------
def test_start_without_destination_uses_the_category_webhook_and_a_body_destination_overrides_it() -> None:
    with _world([]) as (sim, receiver), serve() as other:
        job_id = sim.start_sync("int-cat")["data"]["syncJobId"]
        run = sim.wait_job(job_id, timeout=60)["runs"][-1]
        assert len(_records(receiver, run["syncRunId"], "record.new")) == 20
        # the applications page's shape: a destination in the body moves the job's deliveries
        sim.start_sync("int-cat", other.url, sync_type="delta_sync")
        job = sim.wait_job(job_id, timeout=60)
        assert job["destination"] == other.url
        assert other.events_of_run(job["runs"][-1]["syncRunId"])
        assert not receiver.events_of_run(job["runs"][-1]["syncRunId"])


def test_start_with_no_webhook_configured_and_none_in_the_body_is_400() -> None:
    with run_simulator(applications=5, api_key=API_KEY) as sim:
        status, answer = sim.api("sync.start", {"dataType": "ats_applications"}, "int-nowhere")
        assert (status, answer["success"]) == (400, False)
        assert "No webhook is configured for the ATS category" in answer["error"]["msg"]
        assert sim.runs() == []


# ---- 2. the initial sync Knit starts itself ----------------------------------------------------
def test_connecting_starts_the_initial_sync_once_and_an_activation_with_errors_starts_nothing() -> None:
    with _world([]) as (sim, receiver):
        job = _connect(sim, "int-auto")
        (run,) = job["runs"]
        assert (run["origin"], run["syncType"], run["state"]) == ("activation", "initial_sync", "completed")
        assert (job["models"], job["frequency"], job["destination"]) == (list(ALL_MODELS), "standard", receiver.url)
        assert len(_records(receiver, run["syncRunId"], "record.new")) == 20
        assert sim.starts("int-auto") == []  # nobody called sync.start
        sim.wait_notice(sim.activate("int-auto")["eventId"])  # connected already: nothing new
        assert len(sim.runs(integration_id="int-auto")) == 2  # one initial sync per data type

        sim.wait_notice(sim.activate("int-broken", errors=[{"msg": "invalid credentials"}])["eventId"])
        assert sim.runs(integration_id="int-broken") == []
        fixed = _connect(sim, "int-broken")  # the first activation without errors connects it
        assert [r["origin"] for r in fixed["runs"]] == ["activation"]


def test_no_auto_initial_sync_waits_for_sync_start() -> None:
    with _world(["--no-auto-initial-sync"]) as (sim, receiver):
        sim.wait_notice(sim.activate("int-glossary")["eventId"])
        assert sim.runs(integration_id="int-glossary") == []
        job_id = sim.start_sync("int-glossary")["data"]["syncJobId"]
        (run,) = sim.wait_job(job_id, timeout=60)["runs"]
        assert (run["origin"], run["syncType"]) == ("api", "initial_sync")
        assert len(_records(receiver, run["syncRunId"], "record.new")) == 20
        # One activation can play the other reading, so one stack tests both.
        sim.wait_notice(sim.activate("int-guide", auto_initial_sync=True)["eventId"])
        sim.wait_job(sim.runs(integration_id="int-guide")[0]["syncJobId"], timeout=60)
        assert [r["origin"] for r in sim.runs(integration_id="int-guide")] == ["activation"] * 2
    with _world([]) as (sim, receiver):
        sim.wait_notice(sim.activate("int-asked", auto_initial_sync=False)["eventId"])
        assert sim.runs(integration_id="int-asked") == []


# ---- 3. deltas on the job's frequency, honorScheduler, start time, inactive records -------------
def test_frequency_seconds_parses_any_subset_and_refuses_others() -> None:
    assert parse_args(["--api-key", "k"]).frequency_seconds == {}
    config = parse_args(["--api-key", "k", "--frequency-seconds", "standard=2,high=0.5"])
    assert config.frequency_seconds == {"standard": 2.0, "high": 0.5}
    for bad in ("weekly=1", "standard", "standard=-1", "standard=soon"):
        with pytest.raises(SystemExit):
            parse_args(["--api-key", "k", "--frequency-seconds", bad])
    assert FREQUENCIES == ("standard", "medium", "high")


def test_each_job_runs_deltas_on_its_frequency_one_at_a_time() -> None:
    with _world(["--frequency-seconds", "standard=0.2"]) as (sim, receiver):
        job = _connect(sim, "int-sched")

        def scheduled_done(deliveries: list[Any]) -> int:
            runs = {d.event["syncRunId"] for d in deliveries if d.event and d.event["eventType"] == ALL_CONSUMED}
            return sum(1 for r in sim.runs(integration_id="int-sched") if r["syncRunId"] in runs)

        receiver.wait_for(lambda ds: scheduled_done(ds) >= 3, timeout=30)
        runs = sim.runs(job_id=job["syncJobId"])
        assert runs[0]["origin"] == "activation"
        scheduled = runs[1:]
        assert all((r["origin"], r["syncType"]) == ("schedule", "delta_sync") for r in scheduled)
        finished = [r for r in runs if r["complete"]]
        for before, after in itertools.pairwise(finished):
            assert after["startedAt"] >= before["completedAt"]  # one job's runs never overlap
            assert after["requestedAt"] >= before["completedAt"]  # and none is queued while one runs

        # a frequency without an interval never runs by itself
        status, _ = sim.api(
            "sync.update",
            {"syncJobId": job["syncJobId"], "dataType": "ats_applications", "frequency": "medium"},
            "int-sched",
        )
        assert status == 200
        idle = sim.wait_job(job["syncJobId"], timeout=60)
        assert (idle["frequency"], idle["nextDeltaAt"]) == ("medium", None)


def test_honor_scheduler_false_moves_the_next_delta_true_keeps_it() -> None:
    interval_ms = 30_000
    with _world(["--frequency-seconds", "standard=30"]) as (sim, _):
        job = _connect(sim, "int-honor")
        initial = job["runs"][0]
        planned = job["nextDeltaAt"]
        assert initial["completedAt"] + interval_ms <= planned
        sim.start_sync("int-honor", sync_type="delta_sync", honorScheduler=True)
        kept = sim.wait_job(job["syncJobId"], timeout=60)
        assert kept["nextDeltaAt"] == planned
        sim.start_sync("int-honor", sync_type="delta_sync")  # Knit's default: honorScheduler false
        moved = sim.wait_job(job["syncJobId"], timeout=60)
        adhoc = moved["runs"][-1]
        assert adhoc["origin"] == "api"
        assert moved["nextDeltaAt"] >= adhoc["completedAt"] + interval_ms > planned
        assert [r["origin"] for r in moved["runs"]] == ["activation", "api", "api"]


def test_start_time_is_stored_and_shown_on_the_job() -> None:
    with _world([]) as (sim, _):
        job_id = sim.start_sync("int-hour", startHour=6, startMinute=30)["data"]["syncJobId"]
        job = sim.wait_job(job_id, timeout=60)
        assert (job["settings"]["startHour"], job["settings"]["startMinute"]) == (6, 30)


def test_inactive_records_are_deleted_and_sent_by_an_initial_sync_only_when_asked() -> None:
    with _world(["--delta-share", "0.5"], applications=100) as (sim, receiver):
        job_id = _connect(sim, "int-inactive")["syncJobId"]
        delta = sim.wait_run(sim.trigger_run(job_id)["syncRunId"], timeout=60)
        deleted = set(_records(receiver, delta["syncRunId"], "record.deleted"))
        truth = sim.truth("int-inactive")
        inactive = set(truth["inactive"])
        assert inactive, "a 0.5 delta of 100 applications makes both kinds"
        assert deleted - inactive
        assert inactive <= deleted == set(truth["deleted"])  # record.deleted for removed and inactive alike

        sim.start_sync("int-inactive", sync_type="initial_sync")
        plain = sim.wait_job(job_id, timeout=60)["runs"][-1]
        assert not set(_records(receiver, plain["syncRunId"], "record.new")) & deleted  # active records only
        assert set(sim.truth("int-inactive")["deleted"]) == deleted

        sim.start_sync("int-inactive", sync_type="initial_sync", includeInactiveRecords=True)
        full = sim.wait_job(job_id, timeout=60)["runs"][-1]
        sent = _records(receiver, full["syncRunId"], "record.new")
        assert set(sent) & deleted == inactive  # inactive ones come back as record.new, removed ones do not
        after = sim.truth("int-inactive")
        assert set(after["deleted"]) == deleted - inactive
        assert all(after["applications"][i] == sent[i] for i in inactive)


# ---- 4. sync.start's documented body, sync.update's dataType ------------------------------------
def test_strict_start_keys_refuse_what_knit_does_not_document() -> None:
    with _world(["--strict-start-keys"]) as (sim, receiver):
        for extra in ({"destination": receiver.url}, {"frequency": "standard"}, {"colour": "blue"}):
            body = {"dataType": "ats_applications", **extra}
            status, answer = sim.api("sync.start", body, "int-strict")
            assert status == 400, answer
            assert str(sorted(extra)) in answer["error"]["msg"]
            assert "honorScheduler" in answer["error"]["msg"]  # it names the allowed fields
        assert sim.runs(integration_id="int-strict") == []
        documented = {
            "dataType": "ats_applications",
            "syncType": "initial_sync",
            "honorScheduler": False,
            "includeInactiveRecords": False,
            "models": ["application_info"],
            "startHour": 1,
            "startMinute": 2,
        }
        status, answer = sim.api("sync.start", documented, "int-strict")
        assert (status, answer["success"]) == (200, True)


def test_lenient_start_takes_destination_and_frequency() -> None:
    with _world([]) as (sim, receiver):
        job_id = sim.start_sync("int-lenient", receiver.url, frequency="high")["data"]["syncJobId"]
        assert sim.wait_job(job_id, timeout=60)["frequency"] == "high"


@pytest.mark.parametrize("flags", [[], ["--update-without-data-type"]])
def test_update_refuses_a_missing_data_type_unless_the_flag_says(flags: list[str]) -> None:
    with _world(flags) as (sim, _):
        job_id = sim.start_sync("int-upd")["data"]["syncJobId"]
        sim.wait_job(job_id, timeout=60)
        status, answer = sim.api("sync.update", {"syncJobId": job_id, "frequency": "high"}, "int-upd")
        if flags:
            assert status == 200
        else:
            assert (status, answer["error"]["msg"]) == (400, "'dataType' is required, e.g. 'ats_applications'.")
        status, _ = sim.api(
            "sync.update", {"syncJobId": job_id, "dataType": "ats_applications", "frequency": "high"}, "int-upd"
        )
        assert status == 200


# ---- 5. a new execution id per dispatch ------------------------------------------------------
def test_every_delivery_attempt_carries_a_new_execution_id() -> None:
    def refuse_first_two(_event_id: str | None, attempt: int, _body: bytes) -> int | None:
        return 503 if attempt <= 2 else 200

    with _world([], applications=5, policy=refuse_first_two) as (sim, receiver):
        _connect(sim, "int-exec")
        deliveries = receiver.snapshot()
        by_event: dict[str, list[str]] = {}
        for d in deliveries:
            assert d.event is not None
            by_event.setdefault(d.event["eventId"], []).append(d.headers["x-knit-execution-id"])
        assert all(
            len(ids) == 3 for ids in by_event.values()
        )  # the activation, then each run's records and 2 run events
        events = 1 + sum(run["emitted"] + 2 for run in sim.runs(integration_id="int-exec"))
        executions = [d.headers["x-knit-execution-id"] for d in deliveries]
        assert len(set(executions)) == len(executions) == 3 * events
        assert all(e.startswith("ex_") for e in executions)


# ---- 7. a sync.start accepted whose answer never comes ------------------------------------------
def test_drop_start_answers_starts_the_run_then_hangs_up() -> None:
    with _world(["--drop-start-answers", "1"]) as (sim, _):
        assert parse_args(["--api-key", "k", "--drop-start-answers", "2"]).faults.drop_start_answers == 2
        request = urllib.request.Request(
            sim.base_url + "/v1.0/sync.start",
            method="POST",
            data=json.dumps({"dataType": "ats_applications"}).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "X-Knit-Integration-Id": "int-drop"},
        )
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, urllib.error.URLError)):
            urllib.request.urlopen(request, timeout=10)
        (run,) = sim.runs(integration_id="int-drop")
        assert run["origin"] == "api"
        answered = sim.start_sync("int-drop", sync_type="delta_sync")  # the next call is answered
        assert answered["success"]
        first, second = sim.starts("int-drop")
        assert (first["runId"], first["answered"], first["status"]) == (run["syncRunId"], False, 200)
        assert (second["answered"], second["status"]) == (True, 200)
        assert sim.wait_job(answered["data"]["syncJobId"], timeout=60)["runs"][-1]["syncRunId"] == second["runId"]


# ---- 8. the simulator's record of sync.start calls and runs --------------------------------------
def test_starts_record_every_call_and_runs_say_what_queued_them() -> None:
    with _world([]) as (sim, _):
        status, _ = sim.api("sync.start", {"dataType": "ats_candidates"}, "int-record")
        assert status == 400
        answer = sim.start_sync("int-record", models=["application_info"], honorScheduler=True)
        job_id = answer["data"]["syncJobId"]
        sim.wait_job(job_id, timeout=60)
        sim.wait_run(sim.trigger_run(job_id)["syncRunId"], timeout=60)
        status, _ = sim.api(
            "sync.update",
            {"syncJobId": job_id, "dataType": "ats_applications", "models": list(ALL_MODELS)},
            "int-record",
        )
        assert status == 200
        runs = sim.wait_job(job_id, timeout=60)["runs"]
        assert [(r["origin"], r["syncType"]) for r in runs] == [
            ("api", "initial_sync"),
            ("control", "delta_sync"),
            ("update", "initial_sync"),
        ]
        refused, started = sim.starts("int-record")
        assert refused == {
            "integrationId": "int-record",
            "dataType": "ats_candidates",
            "syncType": "initial_sync",
            "bodyKeys": ["dataType"],
            "receivedAt": refused["receivedAt"],
            "status": 400,
            "runId": None,
            "answered": True,
        }
        assert started["bodyKeys"] == ["dataType", "honorScheduler", "models"]
        assert (started["runId"], started["answered"]) == (runs[0]["syncRunId"], True)
        assert started["receivedAt"] <= runs[0]["requestedAt"] <= runs[0]["startedAt"]
        assert sim.starts("int-other") == []
