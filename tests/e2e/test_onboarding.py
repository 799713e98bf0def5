"""Customers connect, and their data arrives with no human action: the simulator's activation, the receiver,
the registry, the activation watcher in Airflow's triggerer, and the onboarding DAG under the real scheduler.

The simulator plays Knit as its Syncs guide documents it: connecting an integration starts the initial
sync of each data type it syncs (applications and jobs) by itself. One story, in order, because each step
builds on the registry the previous one left: a connection that fails Knit's validation starts nothing and
fails visibly; a clean one is followed: Knit's own initial syncs are adopted (no ``sync.start``), normalized
and reconciled; activating it again starts no second initial sync; two activations at once start one of
each; with the event glossary's reading (Knit starts nothing until asked) onboarding starts exactly one of
each after the grace period; and the main DAG's "all active" mode maps over the registry's active
integrations.
"""

from __future__ import annotations

import urllib.request
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
TYPES = ("ats_applications", "ats_jobs")
ONBOARDING = "knit_integration_onboarding"
ERRORS = [{"code": "INVALID_CREDENTIALS", "msg": "The API token was revoked"}]
GRACE_SECONDS = 8


@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[Stack]:
    with Stack(applications=120, seed=16, database_url=pg_url, integration_ids=["int-configured"]) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(stack: Stack, pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    metadata_url = pg_server.create_database("e2e_onboarding_airflow_metadata")
    env = {**stack.airflow_env(), "KNIT_ONBOARDING_GRACE_SECONDS": str(GRACE_SECONDS)}
    home = AirflowHome(tmp_path_factory.mktemp("airflow"), metadata_url=metadata_url, env=env).migrate()
    with AirflowCluster(home) as running:
        yield running


def _finished(cluster: AirflowCluster, dag_id: str, count: int, timeout: float = 300) -> list[dict[str, Any]]:
    """Wait until ``dag_id`` has ``count`` finished runs (in any state); return them all, oldest first."""
    runs: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal runs
        runs = cluster.dag_runs(dag_id)
        return sum(r["state"] in ("success", "failed") for r in runs) >= count and all(
            r["state"] in ("success", "failed") for r in runs
        )

    wait_until(done, timeout, f"{count} finished runs of {dag_id}", interval=1.0)
    return runs


def _states(cluster: AirflowCluster, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    return {(ti["task_id"], ti["map_index"]): ti["state"] for ti in cluster.task_instances(dag_id, run_id)}


def _task_log(cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> str:
    logs = cluster.home.path / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(path.read_text() for path in sorted(logs.rglob("*.log")))


def _registry(db: Any) -> dict[str, dict[str, Any]]:
    with db.cursor() as cur:
        cur.execute("SELECT integration_id, state, onboarded_at, onboarding_dag_run_id FROM knit_landing.integrations")
        rows = {row[0]: {"state": row[1], "onboarded_at": row[2], "dag_run": row[3]} for row in cur.fetchall()}
    db.rollback()
    return rows


def _initial_syncs(stack: Stack, integration_id: str, data_type: str) -> list[dict[str, Any]]:
    return [
        r
        for r in stack.sim.runs(integration_id=integration_id)
        if r["syncType"] == "initial_sync" and r["dataType"] == data_type
    ]


def _matches_the_source(db: Any, stack: Stack, integration_id: str) -> None:
    for data_type in TYPES:
        assert differences(db, stack.sim.truth(integration_id, data_type=data_type)) == [], data_type


def test_connected_customers_are_onboarded_without_human_action(stack: Stack, cluster: AirflowCluster, db: Any) -> None:
    for dag_id in (MAIN, ONBOARDING):
        cluster.wait_for_dag(dag_id)
    cluster.unpause(ONBOARDING)
    destination = stack.webhook_url

    # 1. Knit's validation failed: the DAG run fails with Knit's errors and nothing is started.
    stack.sim.wait_notice(stack.sim.activate("int-broken", errors=ERRORS, destination=destination)["eventId"])
    (broken,) = _finished(cluster, ONBOARDING, 1)
    assert broken["state"] == "failed"
    states = _states(cluster, ONBOARDING, broken["dag_run_id"])
    assert states[("validation", -1)] == "failed"
    assert states[("finish", -1)] == "success"
    log = _task_log(cluster, ONBOARDING, broken["dag_run_id"], "validation")
    assert "The API token was revoked" in log
    assert "int-broken" in log
    assert stack.sim.runs(integration_id="int-broken") == []
    assert _registry(db)["int-broken"]["state"] == "failed_validation"

    # 2. A customer connects: Knit starts the initial sync of each data type by itself; onboarding adopts
    # each run (no sync.start), waits for it, normalizes and reconciles it: one mapped group per type.
    stack.sim.wait_notice(stack.sim.activate("int-new", destination=destination)["eventId"])
    runs = _finished(cluster, ONBOARDING, 2)
    assert runs[-1]["state"] == "success", f"logs under {cluster.home.path / 'logs'}"
    for data_type in TYPES:
        (initial,) = _initial_syncs(stack, "int-new", data_type)
        assert (initial["state"], initial["origin"]) == ("completed", "activation"), data_type
    assert stack.sim.starts("int-new") == [], "Knit's automatic initial syncs are the only ones"
    states = _states(cluster, ONBOARDING, runs[-1]["dag_run_id"])
    for task_id in ("sync.start_sync", "sync.wait_for_all_consumed", "sync.normalize", "sync.reconcile"):
        for index in range(len(TYPES)):
            assert states[(task_id, index)] == "success", (task_id, index)
    assert states[("publish", -1)] == "success"
    assert _task_log(cluster, ONBOARDING, runs[-1]["dag_run_id"], "sync.start_sync").count("Knit started it") >= 2
    _matches_the_source(db, stack, "int-new")
    # Its publish told the DAGs downstream what changed: one event per type, naming the integration and its run.
    events = cluster.api(
        "GET", f"/assets/events?source_dag_id={ONBOARDING}&source_run_id={quote(runs[-1]['dag_run_id'])}"
    )["asset_events"]
    extras = {event["uri"].rstrip("/"): event["extra"] for event in events}  # Airflow adds a "/"
    assert sorted(extras) == [f"knit://{t}" for t in TYPES]
    for data_type in TYPES:
        (initial,) = _initial_syncs(stack, "int-new", data_type)
        extra = extras[f"knit://{data_type}"]
        assert (extra["data_type"], extra["integrations"], extra["sync_runs"]) == (
            data_type,
            ["int-new"],
            [initial["syncRunId"]],
        )
        record_table = "ats_applications" if data_type == "ats_applications" else "ats_jobs"
        assert extra["tables"][record_table]["inserted"] == initial["eventsByType"]["record.new"]
        assert isinstance(extra["change_watermark"], int)
    registry = _registry(db)
    assert registry["int-new"]["state"] == "active"
    assert registry["int-new"]["onboarded_at"] is not None

    # 3. The same integration activated again: no second initial sync.
    stack.sim.wait_notice(stack.sim.activate("int-new", destination=destination)["eventId"])
    runs = _finished(cluster, ONBOARDING, 3)
    assert runs[-1]["state"] == "success"
    assert [len(_initial_syncs(stack, "int-new", t)) for t in TYPES] == [1, 1]
    assert "int-new: nothing to start (onboarded at" in _task_log(cluster, ONBOARDING, runs[-1]["dag_run_id"], "plan")

    # 4. Two activations at once (one DAG run each, or both in one): one initial sync.
    first = stack.sim.activate("int-twice", destination=destination)
    second = stack.sim.activate("int-twice", destination=destination)
    for notice in (first, second):
        stack.sim.wait_notice(notice["eventId"])

    def twice_onboarded() -> bool:
        return _registry(db).get("int-twice", {}).get("onboarded_at") is not None

    wait_until(twice_onboarded, 300, "int-twice to be onboarded", interval=1.0)
    runs = _finished(cluster, ONBOARDING, len(cluster.dag_runs(ONBOARDING)))
    assert len(runs) in (4, 5), "one DAG run per activation, or both merged into one"
    assert {r["state"] for r in runs[3:]} == {"success"}
    assert [len(_initial_syncs(stack, "int-twice", t)) for t in TYPES] == [1, 1]
    assert stack.sim.starts("int-twice") == []
    _matches_the_source(db, stack, "int-twice")

    # 5. The event glossary's reading: Knit starts nothing until asked. Onboarding waits out the grace
    # period for a run to begin, then starts exactly one initial sync of each data type.
    finished = len(cluster.dag_runs(ONBOARDING))
    stack.sim.wait_notice(stack.sim.activate("int-asked", destination=destination, auto_initial_sync=False)["eventId"])
    runs = _finished(cluster, ONBOARDING, finished + 1)
    assert runs[-1]["state"] == "success", f"logs under {cluster.home.path / 'logs'}"
    calls = {call["dataType"]: call for call in stack.sim.starts("int-asked")}
    assert sorted(calls) == sorted(TYPES)
    assert len(stack.sim.starts("int-asked")) == len(TYPES)
    for data_type, call in calls.items():
        (initial,) = _initial_syncs(stack, "int-asked", data_type)
        assert (initial["origin"], initial["syncRunId"], call["syncType"]) == ("api", call["runId"], "initial_sync")
    log = _task_log(cluster, ONBOARDING, runs[-1]["dag_run_id"], "sync.start_sync")
    assert "started by Airflow after" in log
    _matches_the_source(db, stack, "int-asked")
    # The syncs page says which happened, beside the DAG run that followed each initial sync.
    with urllib.request.urlopen(f"{cluster.api_url}/knit-syncs/", timeout=30) as response:
        page = response.read().decode()
    assert "followed (Knit started it)" in page
    assert "started by Airflow after" in page

    # 6. The main DAG maps over the registry's active integrations: its scheduled run by default (the
    # registry is not empty), and a manual run with all_active; never the integration that failed
    # validation, nor the connection's own integration_id.
    cluster.unpause(MAIN)  # catchup off: the scheduler starts one run, for the latest interval
    (scheduled,) = _finished(cluster, MAIN, 1)
    manual = cluster.trigger(MAIN, {"all_active": True})
    assert cluster.wait_for_run(MAIN, manual) == "success"
    assert (scheduled["run_type"], scheduled["state"]) == ("scheduled", "success")
    for run_id in (scheduled["dag_run_id"], manual):
        states = _states(cluster, MAIN, run_id)
        assert sorted(index for (task_id, index) in states if task_id == "sync.start_sync") == [0, 1, 2], run_id
    for integration_id in ("int-new", "int-twice", "int-asked"):
        runs = sorted(stack.sim.runs(integration_id=integration_id), key=lambda r: r["requestedAt"])
        applications = [r["syncType"] for r in runs if r["dataType"] == "ats_applications"]
        assert applications == ["initial_sync", "delta_sync", "delta_sync"], integration_id
        assert [r["syncType"] for r in runs if r["dataType"] == "ats_jobs"] == ["initial_sync"], integration_id
        _matches_the_source(db, stack, integration_id)
    assert stack.sim.runs(integration_id="int-configured") == []
    assert stack.sim.runs(integration_id="int-broken") == []
