"""The generated data set: seeded (same seed, same data), realistic, lazy enough for a million."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import orjson
from sim_receiver import API_KEY, serve

from knit_simulator.dataset import IntegrationData
from knit_simulator.delta import apply_delta
from knit_simulator.render import Renderer
from knit_simulator.testing import run_simulator


def _records(seed: int, integration: str, n: int, guessed: bool = False) -> list[dict[str, Any]]:
    data = IntegrationData(seed, integration, n)
    renderer = Renderer(data, guessed)
    return [renderer.event_data(data.state(i)) for i in range(n)]


INFO_KEYS = {"id", "status", "candidate", "origin", "appliedAt", "updatedAt", "jobId", "owner", "creditedTo"}


def _parse(ts: str) -> datetime:
    assert ts.endswith("Z"), ts
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_same_seed_same_data_other_seed_or_integration_other_data() -> None:
    assert _records(3, "acme", 300) == _records(3, "acme", 300)
    assert _records(3, "acme", 300) != _records(4, "acme", 300)
    assert _records(3, "acme", 300) != _records(3, "globex", 300)


def test_same_seed_same_deltas() -> None:
    def world(seed: int) -> list[tuple[str, int, bytes]]:
        data = IntegrationData(seed, "acme", 200)
        renderer = Renderer(data)
        out = []
        for _ in range(3):
            for kind, index in apply_delta(data, 0.2):
                state = data.state(index)
                rendered = renderer.deleted_data(state) if state.deleted else renderer.event_data(state)
                out.append((kind, index, orjson.dumps(rendered)))
        return out

    assert world(9) == world(9)
    assert world(9) != world(10)


def test_two_simulators_with_one_seed_deliver_the_same_data() -> None:
    delivered = []
    for _ in range(2):
        with serve() as receiver, run_simulator(applications=25, seed=42, api_key=API_KEY) as sim:
            job_id = sim.start_sync("int-seed", receiver.url)["data"]["syncJobId"]
            runs = [sim.wait_job(job_id, timeout=60)["runs"][-1]]
            runs.append(sim.wait_run(sim.trigger_run(job_id)["syncRunId"], timeout=60))
            delivered.append(
                [
                    sorted(
                        (e["eventType"], e["recordId"], orjson.dumps(e["eventData"]))
                        for e in receiver.events_of_run(run["syncRunId"])
                        if "recordId" in e
                    )
                    for run in runs
                ]
            )
    assert delivered[0] == delivered[1]
    assert len(delivered[0][0]) == 25


def test_records_look_like_knit_applications() -> None:
    records = _records(1, "acme", 2000)
    sizes = [len(orjson.dumps(r)) for r in records]
    assert 1000 <= sum(sizes) / len(sizes) <= 3000

    candidates: dict[str, list[dict[str, Any]]] = {}
    interview_statuses: Counter[str] = Counter()
    custom: Counter[str] = Counter()
    nulls: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for r in records:
        info = r["info"]
        assert set(info) == INFO_KEYS  # Knit's application info: no job title
        statuses[info["status"]] += 1
        assert info["status"] in {"ACTIVE", "REJECTED", "HIRED"}
        assert info["origin"] in {"AGENCY", "REFERRAL", "EXTERNAL", "NOT_SPECIFIED"}
        assert _parse(info["appliedAt"]) <= _parse(info["updatedAt"])
        candidate = info["candidate"]
        candidates.setdefault(candidate["id"], []).append(candidate)
        assert candidate["emails"]
        assert all(set(e) == {"type", "email"} and "@" in e["email"] for e in candidate["emails"])
        assert all(e["type"] in {"WORK", "PERSONAL", "NOT_SPECIFIED"} for e in candidate["emails"])
        assert all(set(p) == {"type", "phoneNumber"} for p in candidate["phones"])
        assert all(p["type"] in {"WORK", "PERSONAL", "SKYPE", "NOT_SPECIFIED"} for p in candidate["phones"])
        assert candidate["location"] is None or isinstance(candidate["location"], str)
        assert all(isinstance(link, str) for link in candidate["links"])
        assert set(info["owner"]) == {"id", "email", "employeeId"}
        nulls["creditedTo"] += info["creditedTo"] is None
        nulls["location"] += candidate["location"] is None
        nulls["employeeId"] += info["owner"]["employeeId"] is None
        nulls["rejection"] += r["rejection"] is None
        stage = r["currentStage"]
        assert set(stage) == {"id", "text"}
        assert stage["id"]
        for interview in r["interviews"]:
            assert _parse(interview["scheduledStart"]) < _parse(interview["scheduledEnd"])
            interview_statuses[interview["status"]] += 1
            assert interview["interviewers"]
            assert interview["subject"]
            assert set(interview["stage"]) == {"id", "text"}
            assert interview["stage"]["id"].split("-")[0] == info["jobId"]  # a stage of the application's job
            assert set(interview["createdBy"]) == {"id", "email", "employeeId"}
        fields = r.get("customFields")
        custom["absent" if fields is None else "set" if fields else "empty"] += 1
        if info["status"] == "REJECTED":
            assert r["rejection"]["reason"]
            assert _parse(r["rejection"]["rejectedAt"]) >= _parse(info["appliedAt"])
        else:
            assert r["rejection"] is None
        if info["status"] == "HIRED":
            assert any(o["status"] == "ACCEPTED" for o in r["offers"])
        for attachment in r["attachments"]:
            assert attachment["type"] in {"RESUME", "COVER_LETTER", "OTHER"}
            assert attachment["link"].startswith("https://")
            assert "expires=" in attachment["link"]
    assert all(nulls[k] > 0 for k in ("creditedTo", "location", "employeeId", "rejection")), nulls
    assert set(interview_statuses) == {"SCHEDULED", "AWAITING_FEEDBACK", "COMPLETE", "CANCELLED"}, interview_statuses
    assert all(custom[k] > 0 for k in ("set", "empty", "absent")), custom  # customFields
    assert all(statuses[s] > 0 for s in ("ACTIVE", "REJECTED", "HIRED"))
    shared = [versions for versions in candidates.values() if len(versions) > 1]
    assert shared, "some candidates apply to several jobs"
    assert all(v == versions[0] for versions in shared for v in versions)  # one person, one profile
    assert sum(bool(r["interviews"]) for r in records) > 100
    assert sum(bool(r["offers"]) for r in records) > 20


def test_guessed_shapes_render_the_same_data_in_the_old_shapes() -> None:
    documented, guessed = _records(1, "acme", 500), _records(1, "acme", 500, guessed=True)
    labels: Counter[str] = Counter()
    for doc, old in zip(documented, guessed, strict=True):
        assert "customFields" not in old
        assert set(old["info"]) == INFO_KEYS | {"jobTitle"}
        assert {k: v for k, v in old["info"].items() if k not in ("jobTitle", "candidate")} == {
            k: v for k, v in doc["info"].items() if k != "candidate"
        }
        old_candidate, doc_candidate = old["info"]["candidate"], doc["info"]["candidate"]
        place = old_candidate["location"]
        assert doc_candidate["location"] == (
            None if place is None else ", ".join(p for p in (place["city"], place["state"], place["country"]) if p)
        )
        assert {k: v for k, v in old_candidate.items() if k != "location"} == {
            k: v for k, v in doc_candidate.items() if k != "location"
        }
        (label,) = set(old["currentStage"]) - {"id"}
        labels[label] += 1
        assert (old["currentStage"]["id"], old["currentStage"][label]) == tuple(doc["currentStage"].values())
        assert [{k: v for k, v in iv.items() if k not in ("stage", "createdBy")} for iv in doc["interviews"]] == (
            old["interviews"]
        )
        for key in ("rejection", "offers", "attachments"):
            assert old[key] == doc[key]
    assert labels["name"] > 0
    assert labels["text"] > 0
    assert any(isinstance(r["info"]["candidate"]["location"], dict) for r in guessed)


def test_truth_renders_in_the_chosen_shape() -> None:
    for flags, has_title in (([], False), (["--guessed-shapes"], True)):
        with run_simulator(applications=5, api_key=API_KEY, args=flags) as sim:
            truth = sim.truth("int-shape")["applications"]
            assert all(("jobTitle" in app["info"]) is has_title for app in truth.values())


def test_a_million_applications_cost_nothing_until_rendered() -> None:
    data = IntegrationData(1, "big", 1_000_000)
    renderer = Renderer(data)
    last = renderer.event_data(data.state(999_999))
    assert last["info"]["id"] == data.application_id(999_999)
    assert data.overrides == {}
    assert len(data.live_indices()) == 1_000_000
    changes = apply_delta(data, 0.001)
    assert len(changes) == 1000
    assert len(data.overrides) == 1000
