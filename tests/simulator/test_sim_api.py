"""The simulator's Knit API: auth, validation like Knit's, the envelope, jobs, and injected API faults."""

from __future__ import annotations

import json
import urllib.request

import pytest
from sim_receiver import API_KEY, Receiver

from knit_simulator.testing import SimulatorProcess, run_simulator

MODELS = ["application_info", "application_stage"]


def _start_body(destination: str, **extra: object) -> dict[str, object]:
    return {"dataType": "ats_applications", "models": MODELS, "destination": destination, **extra}


def test_any_get_answers_for_readiness(simulator: SimulatorProcess) -> None:
    for path in ("/", "/healthz", "/anything/at/all"):
        with urllib.request.urlopen(simulator.base_url + path, timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read())["service"] == "knit-simulator"


def test_wrong_or_missing_key_is_401_in_knit_envelope(simulator: SimulatorProcess, receiver: Receiver) -> None:
    status, answer = simulator.api("sync.start", _start_body(receiver.url), "int-auth", api_key="wrong")
    assert status == 401
    assert answer["success"] is False
    assert answer["error"]["msg"]
    request = urllib.request.Request(
        simulator.base_url + "/v1.0/sync.start",
        method="POST",
        data=json.dumps(_start_body(receiver.url)).encode(),
        headers={"X-Knit-Integration-Id": "int-auth"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 401
    assert API_KEY not in err.value.read().decode()


def test_missing_integration_header_is_400(simulator: SimulatorProcess, receiver: Receiver) -> None:
    status, answer = simulator.api("sync.start", _start_body(receiver.url), "")
    assert status == 400
    assert "X-Knit-Integration-Id" in answer["error"]["msg"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"dataType": "ats_widgets"}, "Unknown dataType"),
        ({"dataType": "ats_candidates"}, "not simulated"),
        ({"dataType": None}, "dataType"),
        ({"models": ["application_info", "application_salary"]}, "application_salary"),
        ({"models": []}, "models"),
        ({"models": "application_info"}, "models"),
        ({"destination": "ftp://example.test/hook"}, "destination"),
        ({"destination": None}, "No webhook is configured for the ATS category"),
        ({"syncType": "full_sync"}, "syncType"),
        ({"startHour": 24}, "startHour"),
        ({"honorScheduler": "yes"}, "honorScheduler"),
    ],
)
def test_invalid_start_bodies_are_400_with_a_message(
    simulator: SimulatorProcess, receiver: Receiver, change: dict[str, object], words: str
) -> None:
    body = {k: v for k, v in {**_start_body(receiver.url), **change}.items() if v is not None}
    status, answer = simulator.api("sync.start", body, "int-invalid")
    assert status == 400, answer
    assert answer["success"] is False
    assert words in answer["error"]["msg"]
    assert simulator.runs(integration_id="int-invalid") == []


def test_body_that_is_not_json_is_400(simulator: SimulatorProcess) -> None:
    request = urllib.request.Request(
        simulator.base_url + "/v1.0/sync.start",
        method="POST",
        data=b"{not json",
        headers={"Authorization": f"Bearer {API_KEY}", "X-Knit-Integration-Id": "int-x"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 400
    assert "not valid JSON" in json.loads(err.value.read())["error"]["msg"]


def test_unknown_operation_is_404_envelope(simulator: SimulatorProcess) -> None:
    status, answer = simulator.api("sync.pause", {}, "int-x")
    assert status == 404
    assert answer["success"] is False


def test_start_answers_job_id_only_and_reuses_the_job(simulator: SimulatorProcess, receiver: Receiver) -> None:
    first = simulator.start_sync("int-start", receiver.url, models=MODELS)
    assert set(first["data"]) == {"syncJobId"}  # Knit's pages only confirm syncJobId
    job_id = first["data"]["syncJobId"]
    assert job_id.startswith("sj_")
    job = simulator.wait_job(job_id, timeout=60)
    assert [r["syncType"] for r in job["runs"]] == ["initial_sync"]
    second = simulator.start_sync("int-start", receiver.url, models=MODELS, sync_type="delta_sync")
    assert second["data"]["syncJobId"] == job_id
    job = simulator.wait_job(job_id, timeout=60)
    assert [r["syncType"] for r in job["runs"]] == ["initial_sync", "delta_sync"]
    assert all(r["state"] == "completed" for r in job["runs"])


def test_first_start_is_initial_even_when_delta_is_asked(simulator: SimulatorProcess, receiver: Receiver) -> None:
    answer = simulator.start_sync("int-first-delta", receiver.url, models=MODELS, sync_type="delta_sync")
    job = simulator.wait_job(answer["data"]["syncJobId"], timeout=60)
    assert [r["syncType"] for r in job["runs"]] == ["initial_sync"]


def test_every_api_answer_carries_an_execution_id(simulator: SimulatorProcess, receiver: Receiver) -> None:
    request = urllib.request.Request(
        simulator.base_url + "/v1.0/sync.start",
        method="POST",
        data=json.dumps(_start_body(receiver.url)).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "X-Knit-Integration-Id": "int-exec"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["X-Knit-Execution-Id"]
        job_id = json.loads(response.read())["data"]["syncJobId"]
    simulator.wait_job(job_id, timeout=60)


def test_update_unknown_job_is_400_and_new_models_resend_everything(
    simulator: SimulatorProcess, receiver: Receiver
) -> None:
    typed = {"dataType": "ats_applications"}
    status, answer = simulator.api("sync.update", {"syncJobId": "sj_nope", **typed}, "int-update")
    assert status == 400
    assert "sj_nope" in answer["error"]["msg"]
    job_id = simulator.start_sync("int-update", receiver.url, models=MODELS)["data"]["syncJobId"]
    simulator.wait_job(job_id, timeout=60)
    status, answer = simulator.api("sync.update", {"syncJobId": job_id, "frequency": "high", **typed}, "int-update")
    assert (status, answer["data"]["syncJobId"]) == (200, job_id)
    assert len(simulator.wait_job(job_id)["runs"]) == 1  # no new models, no new run
    status, _ = simulator.api(
        "sync.update", {"syncJobId": job_id, "models": [*MODELS, "application_offers"], **typed}, "int-update"
    )
    assert status == 200
    job = simulator.wait_job(job_id, timeout=60)
    assert job["frequency"] == "high"
    assert [r["syncType"] for r in job["runs"]] == ["initial_sync", "initial_sync"]
    resent = receiver.events_of_run(job["runs"][1]["syncRunId"])
    records = [e for e in resent if e["eventType"] == "record.new"]
    assert len(records) == 60
    # customFields rides with info on some applications
    assert all(set(e["eventData"]) - {"customFields"} == {"info", "currentStage", "offers"} for e in records)
    status, _ = simulator.api("sync.update", {"syncJobId": job_id, **typed}, "another-integration")
    assert status == 400


def test_api_faults_429_then_5xx_then_success(receiver: Receiver) -> None:
    with run_simulator(
        applications=5, api_key=API_KEY, args=["--api-429", "2", "--api-5xx", "1", "--retry-after", "3"]
    ) as sim:
        answers = [sim.api("sync.start", _start_body(receiver.url), "int-faults") for _ in range(4)]
        statuses = [status for status, _ in answers]
        assert statuses == [429, 429, 503, 200]
        assert all(not body["success"] and body["error"]["msg"] for _, body in answers[:3])
        assert sim.runs(integration_id="int-faults")[0]["syncType"] == "initial_sync"
        assert len(sim.runs()) == 1  # refused calls had no effect
        request = urllib.request.Request(sim.base_url + "/v1.0/sync.start", method="POST", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as err:  # past the faults: auth applies again
            urllib.request.urlopen(request, timeout=5)
        assert err.value.code == 401


def test_retry_after_header_on_429(receiver: Receiver) -> None:
    with run_simulator(applications=5, api_key=API_KEY, args=["--api-429", "1", "--retry-after", "7"]) as sim:
        request = urllib.request.Request(
            sim.base_url + "/v1.0/sync.start",
            method="POST",
            data=json.dumps(_start_body(receiver.url)).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "X-Knit-Integration-Id": "i"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=5)
        assert err.value.code == 429
        assert err.value.headers["Retry-After"] == "7"


def test_return_run_id_flag(receiver: Receiver) -> None:
    with run_simulator(applications=5, api_key=API_KEY, args=["--return-run-id"]) as sim:
        answer = sim.start_sync("int-runid", receiver.url)
        run_id = answer["data"]["syncRunId"]
        run = sim.wait_run(run_id, timeout=60)
        assert run["syncJobId"] == answer["data"]["syncJobId"]
        assert run["state"] == "completed"
