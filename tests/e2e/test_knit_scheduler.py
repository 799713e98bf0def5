"""Knit's own scheduler and Airflow's side by side, under Airflow's real scheduler and triggerer.

The simulator plays Knit as its reference documents it: it pushes to the webhook configured for the
ATS category (``sync.start`` names none, and ``--strict-start-keys`` refuses any field Knit does not
document), and once a job exists it runs a delta every two seconds by itself. The first
``sync.start`` is accepted but its answer is dropped. Meanwhile the main DAG runs in both modes
(``scheduling``) and the on-delivery DAG normalizes what completes. One story, in order:

- the start whose answer was lost starts one run at Knit, and its DAG run is green;
- every wait ends on the run its own ``sync.start`` began, never on a scheduled delta;
- every run, whoever started it, is normalized exactly once, and the tables equal Knit's truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from knit_devtools.airflow_runner import AirflowCluster, AirflowHome
from knit_devtools.services import wait_until
from knit_devtools.stack import Stack
from knit_devtools.truth import differences

pytestmark = pytest.mark.e2e
MAIN = "knit_ats_applications"
ON_DELIVERY = "knit_ats_applications_on_delivery"
INTEGRATION = "int-sched"
WAIT_TASK = "sync.wait_for_all_consumed"


@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[Stack]:
    with Stack(
        applications=120,
        seed=29,
        database_url=pg_url,
        integration_ids=[INTEGRATION],
        simulator_args=[
            "--frequency-seconds",
            "standard=2",
            "--retry-max-delay",
            "1",
            "--drop-start-answers",
            "1",
            "--strict-start-keys",
        ],
    ) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(stack: Stack, pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    metadata_url = pg_server.create_database("e2e_knit_scheduler_airflow_metadata")
    home = AirflowHome(tmp_path_factory.mktemp("airflow"), metadata_url=metadata_url, env=stack.airflow_env()).migrate()
    with AirflowCluster(home) as running:
        yield running


def _task_log(cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> str:
    logs = cluster.home.path / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(path.read_text() for path in sorted(logs.rglob("*.log")))


def _green(cluster: AirflowCluster, conf: dict[str, Any]) -> str:
    run_id = cluster.trigger(MAIN, conf)
    state = cluster.wait_for_run(MAIN, run_id)
    assert state == "success", f"{MAIN} run {run_id} {state}; logs under {cluster.home.path / 'logs'}"
    return run_id


def _waited_run(cluster: AirflowCluster, run_id: str) -> str:
    path = (
        f"/dags/{MAIN}/dagRuns/{quote(run_id, safe='')}/taskInstances/{WAIT_TASK}"
        "/xcomEntries/return_value?map_index=0&deserialize=true"
    )
    value = cluster.api("GET", path)["value"]
    return str(value["sync_run_id"])


def _normalized(db: Any) -> dict[str, int]:
    with db.cursor() as cur:
        cur.execute("SELECT sync_run_id, times_normalized FROM knit.normalized_runs")
        rows = {run_id: int(times) for run_id, times in cur.fetchall()}
    db.rollback()
    return rows


def _not_normalized(db: Any) -> list[str]:
    with db.cursor() as cur:
        cur.execute(
            "SELECT sync_run_id FROM knit_landing.sync_runs WHERE complete_at IS NOT NULL AND normalized_at IS NULL"
        )
        rows = [row[0] for row in cur.fetchall()]
    db.rollback()
    return rows


def test_airflow_and_knits_scheduler_side_by_side(stack: Stack, cluster: AirflowCluster, db: Any) -> None:
    for dag_id in (MAIN, ON_DELIVERY):
        cluster.wait_for_dag(dag_id)
    cluster.unpause(ON_DELIVERY)
    cluster.unpause(MAIN)  # catchup off: the scheduler starts one run, for the latest interval

    # 1. Airflow schedules; Knit accepts the first sync.start and its answer is lost on the way back.
    wait_until(lambda: bool(cluster.dag_runs(MAIN)), 120, f"the scheduled run of {MAIN}", interval=0.5)
    first = cluster.dag_runs(MAIN)[0]["dag_run_id"]
    state = cluster.wait_for_run(MAIN, first)
    assert state == "success", f"{MAIN} run {first} {state}; logs under {cluster.home.path / 'logs'}"
    (call,) = stack.sim.starts(INTEGRATION)
    assert call["answered"] is False, "the simulator was to drop this answer"
    assert set(call["bodyKeys"]).isdisjoint({"destination", "frequency"}), call
    runs = stack.sim.runs(integration_id=INTEGRATION)
    assert [r["origin"] for r in runs if r["origin"] == "api"] == ["api"], "one run at Knit for the lost answer"
    assert _waited_run(cluster, first) == call["runId"]

    # 2. Knit's scheduler runs deltas of the job by itself while Airflow starts its own (honorScheduler).
    def scheduled(count: int) -> bool:
        return sum(r["origin"] == "schedule" for r in stack.sim.runs(integration_id=INTEGRATION)) >= count

    wait_until(lambda: scheduled(2), 120, "two deltas of Knit's own schedule", interval=0.5)
    airflow_runs = [first, _green(cluster, {}), _green(cluster, {"scheduling": "airflow"})]
    wait_until(lambda: scheduled(4), 120, "Knit's schedule to go on", interval=0.5)

    # 3. Knit schedules, Airflow normalizes: no sync.start, the completed runs are normalized and published.
    starts_before = len(stack.sim.starts(INTEGRATION))
    knit_mode = _green(cluster, {"scheduling": "knit"})
    assert len(stack.sim.starts(INTEGRATION)) == starts_before, "scheduling=knit calls no sync.start"
    states = {ti["task_id"]: ti["state"] for ti in cluster.task_instances(MAIN, knit_mode)}
    assert states["normalize_completed"] == "success"
    assert "no sync.start" in _task_log(cluster, MAIN, knit_mode, "plan")

    # 4. Quiet Knit's scheduler (a frequency that never runs by itself), let everything land and settle.
    job_id = runs[0]["syncJobId"]
    status, answer = stack.sim.api(
        "sync.update", {"syncJobId": job_id, "dataType": "ats_applications", "frequency": "high"}, INTEGRATION
    )
    assert status == 200, answer
    stack.sim.wait_job(job_id, timeout=120)
    wait_until(lambda: not _not_normalized(db), 120, "every completed run to be normalized", interval=0.5)

    sim_runs = {r["syncRunId"]: r for r in stack.sim.runs(integration_id=INTEGRATION)}
    assert all(r["state"] == "completed" for r in sim_runs.values())
    # Each wait ended on the run its own sync.start began: a different one each time, never a scheduled delta.
    waited = [_waited_run(cluster, run_id) for run_id in airflow_runs]
    assert len(set(waited)) == len(waited), waited
    assert [sim_runs[run_id]["origin"] for run_id in waited] == ["api"] * len(waited)
    calls = {c["runId"]: c for c in stack.sim.starts(INTEGRATION)}
    for run_id in waited:
        assert sim_runs[run_id]["startedAt"] >= calls[run_id]["receivedAt"], "a run begun before its sync.start"
    # Every run, started by Airflow or by Knit's schedule, normalized exactly once.
    assert _normalized(db) == dict.fromkeys(sim_runs, 1)
    assert differences(db, stack.sim.truth(INTEGRATION)) == []
