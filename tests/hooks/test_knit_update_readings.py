"""KnitHook.update_sync against the simulator under each reading of sync.update's unconfirmed job-id key.

Knit's pages do not name the key; the simulator reads the one ``--update-job-id-key`` names and,
with ``--strict-update-keys``, refuses keys it does not know, as a strict Knit would.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from knit_hook_fakes import API_KEY

from knit_provider.exceptions import KnitRequestError
from knit_simulator.testing import SimulatorProcess, run_simulator

INTEGRATION = "int_update"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _knit(args: Sequence[str]) -> Iterator[tuple[SimulatorProcess, str]]:
    """A simulator with one sync job; its few run events go nowhere and are given up within a second."""
    with run_simulator(applications=0, api_key=API_KEY, args=["--retry-window-seconds", "0.3", *args]) as sim:
        destination = f"http://127.0.0.1:{_closed_port()}/knit"
        job_id = sim.start_sync(INTEGRATION, destination, models=["application_info"])["data"]["syncJobId"]
        yield sim, job_id


@pytest.mark.parametrize("reading", [[], ["--update-job-id-key", "jobId"]], ids=["syncJobId", "jobId"])
def test_the_default_body_works_whichever_key_knit_reads(make_hook, reading):
    with _knit(reading) as (sim, job_id):
        hook = make_hook({"host": sim.base_url})
        updated = hook.update_sync(job_id, "ats_applications", frequency="high", integration_id=INTEGRATION)
        assert updated.sync_job_id == job_id
        assert updated.execution_id
        assert sim.wait_job(job_id, timeout=30)["frequency"] == "high"


@pytest.mark.parametrize("key", ["syncJobId", "jobId"])
def test_a_strict_knit_refuses_the_other_key_with_a_message_that_says_what_to_do(make_hook, key):
    with _knit(["--strict-update-keys", "--update-job-id-key", key]) as (sim, job_id):
        hook = make_hook({"host": sim.base_url})
        with pytest.raises(KnitRequestError) as info:
            hook.update_sync(job_id, "ats_applications", frequency="high", integration_id=INTEGRATION)
        other = "jobId" if key == "syncJobId" else "syncJobId"
        assert info.value.status_code == 400
        assert other in (info.value.knit_message or "")
        assert "sent" in str(info.value)
        assert "pass job_id_keys with the one key Knit reads" in str(info.value)
        assert sim.wait_job(job_id, timeout=30)["frequency"] == "standard"  # nothing changed

        hook.update_sync(job_id, "ats_applications", frequency="high", integration_id=INTEGRATION, job_id_keys=(key,))
        assert sim.wait_job(job_id, timeout=30)["frequency"] == "high"


def test_new_models_through_the_hook_make_the_simulator_resend_everything(make_hook):
    with _knit([]) as (sim, job_id):
        hook = make_hook({"host": sim.base_url})
        hook.update_sync(
            job_id, "ats_applications", models=["application_info", "application_stage"], integration_id=INTEGRATION
        )
        job = sim.wait_job(job_id, timeout=30)
        assert job["models"] == ["application_info", "application_stage"]
        assert [run["syncType"] for run in job["runs"]] == ["initial_sync", "initial_sync"]
