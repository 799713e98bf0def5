"""Delta runs: every event type, pipeline-like changes, and a ground truth that replays exactly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sim_receiver import API_KEY, Receiver, serve

from knit_simulator.testing import SimulatorProcess, run_simulator

APPS = 80


@pytest.fixture(scope="module")
def delta_world() -> Iterator[tuple[SimulatorProcess, Receiver, str, list[dict[str, Any]]]]:
    """An initial sync and four deltas (two by the scheduler endpoint, two by sync.start)."""
    with (
        serve() as receiver,
        run_simulator(applications=APPS, seed=5, api_key=API_KEY, args=["--delta-share", "0.4"]) as sim,
    ):
        job_id = sim.start_sync("int-delta", receiver.url)["data"]["syncJobId"]
        sim.wait_job(job_id, timeout=60)
        for by_endpoint in (True, False, True, False):
            if by_endpoint:
                sim.wait_run(sim.trigger_run(job_id)["syncRunId"], timeout=60)
            else:
                sim.start_sync("int-delta", receiver.url, sync_type="delta_sync")
                sim.wait_job(job_id, timeout=60)
        runs = sim.wait_job(job_id)["runs"]
        yield sim, receiver, job_id, runs


def test_runs_are_one_initial_then_deltas(delta_world: tuple[SimulatorProcess, Receiver, str, list[Any]]) -> None:
    _, _, _, runs = delta_world
    assert [r["syncType"] for r in runs] == ["initial_sync"] + ["delta_sync"] * 4
    assert all(r["state"] == "completed" and r["emitted"] == r["consumed"] for r in runs)


def test_each_delta_brings_new_modified_and_deleted(
    delta_world: tuple[SimulatorProcess, Receiver, str, list[Any]],
) -> None:
    _, receiver, _, runs = delta_world
    for run in runs[1:]:
        events = receiver.events_of_run(run["syncRunId"])
        kinds = Counter(e["eventType"] for e in events)
        assert kinds["record.new"] >= 1
        assert kinds["record.modified"] >= 1
        assert kinds["record.deleted"] >= 1
        assert kinds["sync.events.allConsumed"] == 1
        assert all(e["syncType"] == "delta_sync" for e in events)
        final = next(e for e in events if e["eventType"] == "sync.events.allConsumed")["eventData"]
        assert final["emitted"] == final["consumed"] == sum(kinds[k] for k in kinds if k.startswith("record."))
        assert final["processed"] > final["emitted"]  # a delta scans everything, emits the changes


def test_deleted_events_carry_the_three_ids(delta_world: tuple[SimulatorProcess, Receiver, str, list[Any]]) -> None:
    sim, receiver, _, runs = delta_world
    truth = sim.truth("int-delta")
    deleted = [
        e for run in runs for e in receiver.events_of_run(run["syncRunId"]) if e["eventType"] == "record.deleted"
    ]
    assert deleted
    for event in deleted:
        assert set(event["eventData"]) == {"applicationId", "candidateId", "jobId"}
        assert event["eventData"]["applicationId"] == event["recordId"]
        assert truth["deleted"][event["recordId"]] == event["eventData"]


def test_replaying_every_event_gives_the_ground_truth(
    delta_world: tuple[SimulatorProcess, Receiver, str, list[Any]],
) -> None:
    sim, receiver, _, runs = delta_world
    state: dict[str, Any] = {}
    gone: dict[str, Any] = {}
    for run in runs:
        for event in receiver.events_of_run(run["syncRunId"]):
            if event["eventType"] == "record.deleted":
                state.pop(event["recordId"], None)
                gone[event["recordId"]] = event["eventData"]
            elif event["eventType"].startswith("record."):
                state[event["recordId"]] = event["eventData"]
                gone.pop(event["recordId"], None)
    truth = sim.truth("int-delta")
    assert state == truth["applications"]
    assert gone == truth["deleted"]
    assert truth["count"] == len(state)


def test_modifications_move_applications_through_the_pipeline(
    delta_world: tuple[SimulatorProcess, Receiver, str, list[Any]],
) -> None:
    _, receiver, _, runs = delta_world
    latest: dict[str, Any] = {}
    seen: Counter[str] = Counter()
    for run in runs:
        for event in receiver.events_of_run(run["syncRunId"]):
            if not event["eventType"].startswith("record."):
                continue
            before = latest.get(event["recordId"])
            if event["eventType"] == "record.new" and run["syncType"] == "delta_sync":
                assert before is None  # a delta's new application was never sent before
            if event["eventType"] == "record.modified":
                after = event["eventData"]
                assert before is not None
                assert after != before
                assert after["info"]["updatedAt"] > before["info"]["updatedAt"]
                old_stage = int(before["currentStage"]["id"].rsplit("-", 1)[1])
                new_stage = int(after["currentStage"]["id"].rsplit("-", 1)[1])
                assert new_stage >= old_stage  # stages only move forward
                seen["stage moved"] += new_stage > old_stage
                seen["new interview"] += len(after["interviews"]) > len(before["interviews"])
                seen["new offer"] += len(after["offers"]) > len(before["offers"])
                seen["rejected"] += after["rejection"] is not None and before["rejection"] is None
                seen["hired"] += after["info"]["status"] == "HIRED" != before["info"]["status"]
            latest[event["recordId"]] = event["eventData"]
    assert all(seen[kind] >= 1 for kind in ("stage moved", "new interview", "new offer", "rejected", "hired")), seen


def test_a_full_resync_sends_exactly_the_live_applications() -> None:
    with (
        serve() as receiver,
        run_simulator(applications=30, seed=5, api_key=API_KEY, args=["--delta-share", "0.5"]) as sim,
    ):
        job_id = sim.start_sync("int-resync", receiver.url)["data"]["syncJobId"]
        sim.wait_job(job_id, timeout=60)
        sim.wait_run(sim.trigger_run(job_id)["syncRunId"], timeout=60)
        resync = sim.wait_run(sim.trigger_run(job_id, "initial_sync")["syncRunId"], timeout=60)
        events = receiver.events_of_run(resync["syncRunId"])
        records = {e["recordId"]: e["eventData"] for e in events if e["eventType"] == "record.new"}
        assert records == sim.truth("int-resync")["applications"]
        assert resync["processed"] == resync["emitted"] == len(records)
