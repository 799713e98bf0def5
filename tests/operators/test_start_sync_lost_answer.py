"""A ``sync.start`` whose answer is lost starts one run, not two: the simulator, the receiver and the landing store.

The simulator (``--drop-start-answers 1``) accepts the first ``sync.start``, starts its run, and resets the
connection without answering. The run's events go to the real receiver process, which lands them in this
module's Postgres. StartSyncOperator must find that run in the landing store and return it, without sending
``sync.start`` again; a later try of the same task instance reuses the recorded start without calling Knit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from knit_landing_helpers import receiver_process

from knit_provider.operators.start_sync import StartSyncOperator
from knit_simulator.testing import run_simulator

API_KEY = "test-lost-answer-key-5b1e"
INTEGRATION = "int-lost-answer"


@dataclass
class _TaskInstance:
    """The task instance fields the operator keys its start record on."""

    dag_id: str = "knit_ats_applications"
    run_id: str = "manual__lost_answer"
    task_id: str = "sync.start_sync"
    map_index: int = 0


@pytest.fixture(scope="module")
def receiver(landing_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real receiver process, landing in this module's database."""
    with receiver_process(landing_url, API_KEY, tmp_path_factory.mktemp("receiver")) as url:
        yield url


def test_a_dropped_answer_attaches_to_the_one_run_knit_began(receiver, landing_url, monkeypatch):
    args = ["--destination", receiver, "--drop-start-answers", "1"]
    with run_simulator(applications=5, api_key=API_KEY, args=args) as sim:
        knit = {"conn_type": "knit", "host": sim.base_url, "password": API_KEY, "extra": {"integration_id": "x"}}
        monkeypatch.setenv("AIRFLOW_CONN_KNIT_DEFAULT", json.dumps(knit))
        monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", landing_url)
        context = {"ti": _TaskInstance()}

        result = StartSyncOperator(task_id="start_sync", integration_id=INTEGRATION, unknown_outcome_grace=60).execute(
            context
        )  # type: ignore[arg-type]

        (start,) = sim.starts(integration_id=INTEGRATION)
        assert start["answered"] is False, "the simulator must have dropped the answer for this to test"
        (run,) = sim.runs(integration_id=INTEGRATION)
        assert (result["sync_job_id"], result["sync_run_id"]) == (run["syncJobId"], run["syncRunId"])
        assert (result["integration_id"], result["started_by"]) == (INTEGRATION, "airflow")

        # The task retried (or cleared and run again in the same DAG run): the recorded start, no call to Knit.
        again = StartSyncOperator(task_id="start_sync", integration_id=INTEGRATION).execute(context)  # type: ignore[arg-type]
        assert again == result
        assert len(sim.starts(integration_id=INTEGRATION)) == 1
        assert len(sim.runs(integration_id=INTEGRATION)) == 1
