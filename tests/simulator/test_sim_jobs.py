"""``ats_jobs``: Knit's job models, consistent with the applications, through the same runs and deliveries.

Initial syncs send the active jobs (a closed job is inactive: only ``includeInactiveRecords`` sends
it), deltas edit, close (``record.deleted``) and open jobs, every application belongs to a job of its
integration and carries that job's stage ids, and ``/_sim/truth?data_type=ats_jobs`` is what a
receiver of every event holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from sim_receiver import API_KEY, Receiver, serve

from knit_simulator.config import parse_args
from knit_simulator.dataset import MAX_JOBS, IntegrationData
from knit_simulator.delta import apply_delta, apply_job_delta
from knit_simulator.render import Renderer
from knit_simulator.render_jobs import JOB_MODELS, JobRenderer
from knit_simulator.testing import SimulatorProcess, run_simulator

JOBS = "ats_jobs"
APPLICATIONS = 1200  # ten jobs
SEED = 21
INTEGRATION = "int-jobs"


class World(NamedTuple):
    sim: SimulatorProcess
    receiver: Receiver
    runs: list[dict[str, Any]]  # initial, two deltas, the resync with includeInactiveRecords
    after_deltas: dict[str, Any]  # the jobs' truth before the resync


def _records(receiver: Receiver, run_id: str, event_type: str) -> dict[str, dict[str, Any]]:
    return {e["recordId"]: e["eventData"] for e in receiver.events_of_run(run_id) if e["eventType"] == event_type}


# ---- the data set, in process ------------------------------------------------------------------
def test_every_application_belongs_to_a_job_of_its_integration_and_carries_its_stage_ids() -> None:
    data = IntegrationData(SEED, "acme", APPLICATIONS)
    renderer = Renderer(data)
    jobs = JobRenderer(renderer)
    for _ in range(3):  # jobs open and close, and new applications arrive meanwhile
        apply_job_delta(data, 0.5)
        apply_delta(data, 0.2)
        renderer.refresh_jobs()
    rendered = {jobs.job_id(j): jobs.event_data(state) for j, state in enumerate(data.job_states)}
    for index in data.live_indices():
        app = renderer.event_data(data.state(index))
        job = rendered[app["info"]["jobId"]]
        assert app["currentStage"]["id"] in {stage["id"] for stage in job["stages"]}
    newcomers = [data.state(i) for i in range(data.base_count, data.count)]
    assert newcomers, "the deltas brought new applications"
    # a new application goes to a job that was open when it arrived, so never one closed before the data set
    assert all(
        data.job_states[s.job].closed_ms is None or s.applied_ms < data.job_states[s.job].closed_ms for s in newcomers
    )


def test_jobs_are_few_and_share_departments_and_offices() -> None:
    assert IntegrationData(1, "big", 1_000_000).base_jobs == MAX_JOBS
    data = IntegrationData(SEED, "acme", 12_000)
    jobs = JobRenderer(Renderer(data))
    records = [jobs.event_data(state) for state in data.job_states]
    departments = Counter(d["name"] for r in records for d in r["departments"])
    offices = Counter(o["id"] for r in records for o in r["offices"])
    assert len(records) == 100
    assert len(departments) <= 8  # a small vocabulary: reports group by department and office
    assert max(departments.values()) >= 10
    assert len(offices) <= 10
    assert max(offices.values()) >= 10
    assert {r["info"]["status"] for r in records} == {"OPEN", "CLOSED", "DRAFT", "NOT_SPECIFIED"}
    assert all(
        set(r) == {"info", "departments", "offices", "hiringManagers", "recruiters", "stages", "rawValues", "jobPosts"}
        for r in records
    )


def test_data_types_flag_says_which_initial_syncs_a_connection_starts() -> None:
    assert parse_args(["--api-key", "k"]).data_types == ("ats_applications", "ats_jobs")
    assert parse_args(["--api-key", "k", "--data-types", "ats_jobs"]).data_types == ("ats_jobs",)
    for bad in ("ats_candidates", "", "ats_jobs,employee"):
        with pytest.raises(SystemExit):
            parse_args(["--api-key", "k", "--data-types", bad])


# ---- runs of ats_jobs, through the simulator's HTTP API --------------------------------------
@pytest.fixture(scope="module")
def jobs_world() -> Iterator[World]:
    """An initial sync of ats_jobs, two deltas, and a full resync with includeInactiveRecords."""
    with (
        serve() as receiver,
        run_simulator(
            applications=APPLICATIONS, seed=SEED, api_key=API_KEY, args=["--destination", receiver.url]
        ) as sim,
    ):
        job_id = sim.start_sync(INTEGRATION, data_type=JOBS)["data"]["syncJobId"]
        sim.wait_job(job_id, timeout=60)
        for _ in range(2):
            sim.wait_run(sim.trigger_run(job_id, delta_share=0.5)["syncRunId"], timeout=60)
        after_deltas = sim.truth(INTEGRATION, data_type=JOBS)
        sim.start_sync(INTEGRATION, data_type=JOBS, sync_type="initial_sync", includeInactiveRecords=True)
        yield World(sim, receiver, sim.wait_job(job_id, timeout=60)["runs"], after_deltas)


def test_an_initial_sync_sends_every_active_job_in_knits_envelope(
    jobs_world: World,
) -> None:
    receiver, runs = jobs_world.receiver, jobs_world.runs
    initial = runs[0]
    assert (initial["syncType"], initial["dataType"], initial["state"]) == ("initial_sync", JOBS, "completed")
    data = IntegrationData(SEED, INTEGRATION, APPLICATIONS)
    active = {data.jobs[j].job_id for j in data.live_jobs()}
    closed = {data.jobs[j].job_id for j in data.closed_jobs()}
    assert active, "the data set has open jobs"
    assert closed, "the data set has closed jobs"
    sent = _records(receiver, initial["syncRunId"], "record.new")
    assert set(sent) == active  # closed jobs are inactive: not sent
    assert initial["processed"] == initial["emitted"] == len(active)
    events = receiver.events_of_run(initial["syncRunId"])
    assert {e["syncDataType"] for e in events} == {JOBS}
    assert [e["eventType"] for e in events if not e["eventType"].startswith("record.")][-1] == "sync.events.allConsumed"
    for job_id, event_data in sent.items():
        assert event_data["info"]["id"] == job_id
        assert event_data["info"]["status"] in ("OPEN", "DRAFT", "NOT_SPECIFIED")
        assert set(event_data) == {
            "info",
            "departments",
            "offices",
            "hiringManagers",
            "recruiters",
            "stages",
            "rawValues",
            "jobPosts",
        }


def test_deltas_edit_close_and_open_jobs(jobs_world: World) -> None:
    receiver, runs = jobs_world.receiver, jobs_world.runs
    latest = _records(receiver, runs[0]["syncRunId"], "record.new")
    edited: Counter[str] = Counter()
    for run in runs[1:3]:
        assert (run["syncType"], run["state"]) == ("delta_sync", "completed")
        kinds = Counter(e["eventType"] for e in receiver.events_of_run(run["syncRunId"]))
        assert min(kinds["record.new"], kinds["record.modified"], kinds["record.deleted"]) >= 1, kinds
        for job_id, event_data in _records(receiver, run["syncRunId"], "record.deleted").items():
            assert event_data == {"jobId": job_id}
            assert job_id in latest  # only a job the receiver holds is closed
            del latest[job_id]
        for job_id, after in _records(receiver, run["syncRunId"], "record.modified").items():
            before = latest[job_id]
            assert after["info"]["updatedAt"] > before["info"]["updatedAt"]
            assert after["stages"] == before["stages"]  # a job keeps its pipeline
            edited.update(
                key
                for key in ("info", "recruiters", "hiringManagers", "offices", "jobPosts")
                if after[key] != before[key]
            )
            edited["title"] += after["info"]["title"] != before["info"]["title"]
            latest[job_id] = after
        for job_id, new in _records(receiver, run["syncRunId"], "record.new").items():
            assert job_id not in latest
            assert new["info"]["status"] == "OPEN"
            latest[job_id] = new
    assert edited["info"] >= 2, edited


def test_include_inactive_records_sends_the_closed_jobs(
    jobs_world: World,
) -> None:
    sim, receiver, runs = jobs_world.sim, jobs_world.receiver, jobs_world.runs
    full = runs[-1]
    sent = _records(receiver, full["syncRunId"], "record.new")
    truth = sim.truth(INTEGRATION, data_type=JOBS)
    assert truth["inactive"]
    assert set(truth["inactive"]) <= set(sent)
    assert all(sent[job_id]["info"]["status"] == "CLOSED" for job_id in truth["inactive"])
    assert all(sent[job_id]["info"]["closedAt"] for job_id in truth["inactive"])
    assert set(sent) == set(truth["jobs"])  # the closed ones are held again, as the receiver holds them


def test_the_truth_is_what_a_receiver_of_every_event_holds(
    jobs_world: World,
) -> None:
    sim, receiver, runs = jobs_world.sim, jobs_world.receiver, jobs_world.runs

    def replay(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        held: dict[str, Any] = {}
        gone: dict[str, Any] = {}
        for run in runs:
            for event in receiver.events_of_run(run["syncRunId"]):
                if event["eventType"] == "record.deleted":
                    held.pop(event["recordId"], None)
                    gone[event["recordId"]] = event["eventData"]
                elif event["eventType"].startswith("record."):
                    held[event["recordId"]] = event["eventData"]
                    gone.pop(event["recordId"], None)
        return held, gone

    held, gone = replay(runs[:3])
    assert gone, "the deltas closed jobs"
    assert (held, gone) == (jobs_world.after_deltas["jobs"], jobs_world.after_deltas["deleted"])
    held, gone = replay(runs)
    truth = sim.truth(INTEGRATION, data_type=JOBS)
    assert (truth["dataType"], truth["integrationId"], truth["models"]) == (JOBS, INTEGRATION, sorted(JOB_MODELS))
    assert held == truth["jobs"]
    assert gone == truth["deleted"] == {}  # the resync sent every closed job again
    assert truth["count"] == len(held)
    # the applications of the same integration belong to its jobs, open or closed, old or new
    applications = sim.truth(INTEGRATION)
    assert applications["dataType"] == "ats_applications"
    assert {a["info"]["jobId"] for a in applications["applications"].values()} <= set(truth["jobs"])


def test_connecting_starts_the_configured_types_and_sync_update_takes_job_models() -> None:
    with (
        serve() as receiver,
        run_simulator(
            applications=5, api_key=API_KEY, args=["--destination", receiver.url, "--data-types", JOBS]
        ) as sim,
    ):
        sim.wait_notice(sim.activate("int-one")["eventId"])
        (run,) = sim.runs(integration_id="int-one")
        job = sim.wait_job(run["syncJobId"], timeout=60)
        assert (job["dataType"], job["models"], run["origin"]) == (JOBS, list(JOB_MODELS), "activation")
        assert _records(receiver, run["syncRunId"], "record.new")
        status, answer = sim.api("sync.start", {"dataType": JOBS, "models": ["application_info"]}, "int-one")
        assert status == 400
        assert "application_info" in answer["error"]["msg"]
        body = {"syncJobId": job["syncJobId"], "dataType": JOBS, "models": ["job_info", "job_stages"]}
        assert sim.api("sync.update", body, "int-one")[0] == 200
        resync = sim.wait_job(job["syncJobId"], timeout=60)["runs"][-1]
        assert (resync["origin"], resync["syncType"]) == ("update", "initial_sync")
        assert all(set(d) == {"info", "stages"} for d in _records(receiver, resync["syncRunId"], "record.new").values())
        assert sim.truth("int-one", data_type=JOBS)["models"] == ["job_info", "job_stages"]
