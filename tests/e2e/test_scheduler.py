"""Both DAGs under Airflow's own processes: scheduler, triggerer, DAG processor and API server.

Unlike ``airflow dags test``, this is how production runs them: the sensor really defers to the
triggerer, the asset watcher really watches the landing store from the triggerer, and a backfill
is created with ``airflow backfill create`` and run by the scheduler. Airflow's metadata lives in
Postgres (SQLite cannot take four processes writing at once) and the executor is the LocalExecutor.
One story, in order, because each step builds on the state the previous one left.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
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
JOBS = "knit_ats_jobs"
JOBS_ON_DELIVERY = "knit_ats_jobs_on_delivery"
EXAMPLE = "knit_example_hiring_funnel"
APPLICATIONS_URI = "knit://ats_applications"
# The example's summary computed from scratch (dags/knit_example_hiring_funnel.py keeps it incrementally).
RECOMPUTED = (
    "SELECT integration_id, (applied_at AT TIME ZONE 'UTC')::date, current_stage_name, status, count(*)"
    " FROM knit.ats_applications WHERE NOT is_deleted GROUP BY 1, 2, 3, 4"
)


@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[Stack]:
    """Retries capped at one second, so deliveries resume quickly once the receiver is back."""
    with Stack(
        applications=150,
        seed=11,
        database_url=pg_url,
        integration_ids=["int-acme"],
        simulator_args=["--retry-max-delay", "1"],
    ) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(stack: Stack, pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    metadata_url = pg_server.create_database("e2e_airflow_metadata")
    home = AirflowHome(tmp_path_factory.mktemp("airflow"), metadata_url=metadata_url, env=stack.airflow_env()).migrate()
    with AirflowCluster(home) as running:
        yield running


def _finished_runs(cluster: AirflowCluster, dag_id: str, count: int, timeout: float = 300) -> list[dict[str, Any]]:
    """Wait until ``dag_id`` has ``count`` finished runs; fail at once if one failed."""
    runs: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal runs
        runs = cluster.dag_runs(dag_id)
        failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
        assert not failed, f"{dag_id} runs failed: {failed}; logs under {cluster.home.path / 'logs'}"
        return sum(r["state"] == "success" for r in runs) >= count

    wait_until(done, timeout, f"{count} successful runs of {dag_id}", interval=1.0)
    return runs


def _task_log(cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> str:
    logs = cluster.home.path / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(path.read_text() for path in sorted(logs.rglob("*.log")))


def _announced_run_ids(cluster: AirflowCluster) -> list[str]:
    events = cluster.api("GET", "/assets/events?limit=100&order_by=timestamp")["asset_events"]
    return [e["extra"]["payload"]["sync_run_id"] for e in events if (e.get("extra") or {}).get("from_trigger")]


def _landed_events(db: Any) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM knit_landing.events")
        (count,) = cur.fetchone()
    db.rollback()
    return int(count)


def _publish_extra(cluster: AirflowCluster, dag_id: str, run_id: str) -> dict[str, Any]:
    """The extra of the applications asset's event that a DAG run published."""
    path = f"/assets/events?source_dag_id={dag_id}&source_run_id={quote(run_id, safe='')}"
    events = cluster.api("GET", path)["asset_events"]
    (extra,) = [e["extra"] for e in events if e["uri"].rstrip("/") == APPLICATIONS_URI]  # Airflow adds a "/"
    return dict(extra)


def _summary_is_recomputed(db: Any) -> bool:
    """``knit_examples.hiring_funnel`` equals the full recomputation (and exists)."""

    def ordered(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return sorted(rows, key=lambda row: tuple("" if v is None else str(v) for v in row))

    with db.cursor() as cur:
        cur.execute("SELECT to_regclass('knit_examples.hiring_funnel') IS NOT NULL")
        summary = None
        if cur.fetchone()[0]:
            cur.execute("SELECT integration_id, day, stage, status, applications FROM knit_examples.hiring_funnel")
            summary = ordered(cur.fetchall())
        cur.execute(RECOMPUTED)
        recomputed = ordered(cur.fetchall())
    db.rollback()
    return summary == recomputed


def _example_caught_up(
    cluster: AirflowCluster, db: Any, sync_runs: set[str], seen: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Wait until the example DAG's runs not in ``seen`` have received ``sync_runs`` (Airflow may merge events into
    fewer runs), none is left to run or failed, and its summary equals the recomputation. Returns the return
    values (XCom) of those runs, by run id."""
    returns: dict[str, dict[str, Any]] = {}

    def caught_up() -> bool:
        runs = [r for r in cluster.dag_runs(EXAMPLE) if r["dag_run_id"] not in seen]
        failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
        assert not failed, f"{EXAMPLE} runs failed: {failed}; logs under {cluster.home.path / 'logs'}"
        for run in runs:
            if run["state"] == "success" and run["dag_run_id"] not in returns:
                path = f"/dags/{EXAMPLE}/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances/refresh"
                returns[run["dag_run_id"]] = cluster.api("GET", f"{path}/xcomEntries/return_value")["value"]
        received = {run_id for value in returns.values() for run_id in value["sync_runs"]}
        finished = all(r["state"] == "success" for r in runs)
        return finished and sync_runs <= received and _summary_is_recomputed(db)

    wait_until(caught_up, 300, f"{EXAMPLE} to receive {sorted(sync_runs)} and match the recomputation", interval=1.0)
    return returns


def test_production_path_asset_watcher_and_backfill(stack: Stack, cluster: AirflowCluster, db: Any) -> None:
    integration_id = stack.integration_ids[0]
    for dag_id in (MAIN, ON_DELIVERY, EXAMPLE):
        cluster.wait_for_dag(dag_id)
    cluster.unpause(ON_DELIVERY)
    cluster.unpause(EXAMPLE)  # downstream: runs when a publish updates knit://ats_applications
    # The receiver is down while the sync starts: Knit (the simulator) keeps retrying, the run
    # cannot complete, and the sensor must defer. It comes back once the wait is in the triggerer.
    stack.stop_receiver()
    cluster.unpause(MAIN)  # catchup off: the scheduler starts one run, for the latest interval

    # 1. The scheduled run: start_sync, the sensor deferred to the triggerer, normalize, publish.
    def sensor_deferred() -> bool:
        runs = cluster.dag_runs(MAIN)
        return bool(runs) and any(
            ti["task_id"] == "sync.wait_for_all_consumed" and ti["state"] == "deferred"
            for ti in cluster.task_instances(MAIN, runs[0]["dag_run_id"])
        )

    wait_until(sensor_deferred, 300, "the sensor to defer", interval=1.0)
    stack.start_receiver()
    (main_run,) = _finished_runs(cluster, MAIN, 1)
    assert main_run["run_type"] == "scheduled"
    (initial,) = stack.sim.runs(integration_id=integration_id)
    assert initial["syncType"] == "initial_sync"
    states = {
        (ti["task_id"], ti["map_index"]): ti["state"] for ti in cluster.task_instances(MAIN, main_run["dag_run_id"])
    }
    assert states[("sync.wait_for_all_consumed", 0)] == "success"
    assert states[("normalize_backfill_interval", -1)] == "skipped"
    wait_log = _task_log(cluster, MAIN, main_run["dag_run_id"], "sync.wait_for_all_consumed")
    assert "Pausing task as DEFERRED" in wait_log, "the sensor must have handed the wait to the triggerer"
    assert "Trigger fired event" in wait_log
    assert differences(db, stack.sim.truth(integration_id)) == []
    # Its publish says what changed. The run is listed by whichever normalized it first: this DAG's group, or the
    # on-delivery DAG if the watcher announced it sooner (then that DAG's event lists it, and this one none).
    extra = _publish_extra(cluster, MAIN, main_run["dag_run_id"])
    assert set(extra) == {"data_type", "integrations", "sync_runs", "tables", "change_watermark"}
    assert extra["data_type"] == "ats_applications"
    assert isinstance(extra["change_watermark"], int)
    if extra["sync_runs"]:
        assert (extra["integrations"], extra["sync_runs"]) == ([integration_id], [initial["syncRunId"]])
        assert extra["tables"]["ats_applications"]["inserted"] == initial["eventsByType"]["record.new"]
    # The example DAG ran because of it: its events named the integration and the run, and its summary is exact.
    seen = _example_caught_up(cluster, db, {initial["syncRunId"]}, {})
    assert {i for value in seen.values() for i in value["integrations"]} == {integration_id}
    assert max(value["to_seq"] for value in seen.values()) >= extra["change_watermark"]
    assert sum(value["applications_read"] for value in seen.values()) >= initial["eventsByType"]["record.new"]

    # 2. Knit runs deltas on its own schedule: no Airflow task waits; the watcher announces each
    # completed run once and the on-delivery DAG runs once for it. (The scheduled run above may or
    # may not have been announced too, depending on whether its own normalize came first.)
    announced_before = _announced_run_ids(cluster)
    assert announced_before in ([], [initial["syncRunId"]])
    deltas = []
    for _ in range(2):
        delta = stack.sim.trigger_run(initial["syncJobId"])
        stack.sim.wait_run(delta["syncRunId"])
        deltas.append(delta["syncRunId"])
        _finished_runs(cluster, ON_DELIVERY, len(announced_before) + len(deltas))
    assert _announced_run_ids(cluster) == announced_before + deltas, "each completed run announced once"
    assert len(cluster.dag_runs(ON_DELIVERY)) == len(announced_before) + len(deltas), "one DAG run per run"
    assert differences(db, stack.sim.truth(integration_id)) == []
    # Each on-delivery run's publish ran the example DAG (or fewer runs, where Airflow merged events).
    seen |= _example_caught_up(cluster, db, set(deltas), seen)

    # 3. The second data type through the same DAGs, built from its spec: knit_ats_jobs starts the jobs'
    # initial sync, and Knit's deltas (which edit, close and open jobs) go through its on-delivery DAG.
    for dag_id in (JOBS, JOBS_ON_DELIVERY):
        cluster.wait_for_dag(dag_id)
    cluster.unpause(JOBS_ON_DELIVERY)
    cluster.unpause(JOBS)  # its scheduled run syncs the configured integration
    _finished_runs(cluster, JOBS, 1)
    (jobs_initial,) = [r for r in stack.sim.runs(integration_id=integration_id) if r["dataType"] == "ats_jobs"]
    assert jobs_initial["syncType"] == "initial_sync"

    def normalized(run_id: str) -> bool:
        with db.cursor() as cur:
            cur.execute(
                "SELECT normalized_at IS NOT NULL FROM knit_landing.sync_runs WHERE sync_run_id = %s", (run_id,)
            )
            row = cur.fetchone()
        db.rollback()
        return bool(row and row[0])

    # One delta at a time, as in step 2: an asset event that arrives while the DAG run of the previous one is
    # being created can wait in Airflow for the next event (the watcher announces it again later).
    for _ in range(2):
        delta = stack.sim.trigger_run(jobs_initial["syncJobId"])
        stack.sim.wait_run(delta["syncRunId"])
        run_id = delta["syncRunId"]
        wait_until(partial(normalized, run_id), 300, f"jobs run {run_id} normalized", interval=1.0)
    jobs_truth = stack.sim.truth(integration_id, data_type="ats_jobs")
    assert differences(db, jobs_truth) == []
    assert differences(db, stack.sim.truth(integration_id)) == [], "the applications are untouched by jobs runs"
    # Through the view users report from, every application of a job the source has joins to it (without
    # includeInactiveRecords, Knit's initial sync leaves out the jobs closed before it: those show no title).
    with db.cursor() as cur:
        cur.execute(
            "SELECT job_id, job_title FROM knit.ats_applications_with_jobs WHERE integration_id = %s",
            (integration_id,),
        )
        joined = cur.fetchall()
    db.rollback()
    synced = set(jobs_truth["jobs"]) | set(jobs_truth["deleted"])
    assert joined
    assert [job for job, title in joined if job in synced and title is None] == []
    assert [job for job, title in joined if job not in synced and title is not None] == []

    # 4. A backfill of a day normalizes the runs that completed that day, and calls no Knit endpoint.
    day = (datetime.now(timezone.utc) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    with db, db.cursor() as cur:
        # The initial run "completed" on that day; the deltas stay today, outside the interval.
        cur.execute(
            "UPDATE knit_landing.sync_runs SET complete_at = %s WHERE sync_run_id = %s",
            (day + timedelta(hours=12), initial["syncRunId"]),
        )
        cur.execute(
            "TRUNCATE knit.ats_applications, knit.ats_application_interviews, knit.ats_application_offers,"
            " knit.ats_application_attachments, knit.ats_candidates, knit.ats_application_versions,"
            " knit.ats_application_stage_history, knit.normalized_runs"
        )
        # A TRUNCATE fires no row trigger and takes no change value: the feed cannot tell a consumer that rows
        # vanished, so the example starts over, as its doc says (with no watermark it reads everything again).
        cur.execute(
            "TRUNCATE knit_examples.hiring_funnel, knit_examples.hiring_funnel_applications,"
            " knit_examples.hiring_funnel_watermark"
        )
    knit_runs_before = len(stack.sim.runs())
    events_before = _landed_events(db)
    cluster.home.run(
        "backfill", "create", "--dag-id", MAIN, "--from-date", day.isoformat(), "--to-date", day.isoformat()
    )
    runs = _finished_runs(cluster, MAIN, 2)
    (backfill,) = [r for r in runs if r["run_type"] == "backfill"]
    assert len(stack.sim.runs()) == knit_runs_before, "a backfill must not start a Knit sync"
    assert _landed_events(db) == events_before, "nothing was delivered because of the backfill"
    states = {ti["task_id"]: ti["state"] for ti in cluster.task_instances(MAIN, backfill["dag_run_id"])}
    assert states["normalize_backfill_interval"] == "success"
    assert states["publish"] == "success"
    assert "not calling Knit" in _task_log(cluster, MAIN, backfill["dag_run_id"], "plan")
    with db.cursor() as cur:
        cur.execute("SELECT sync_run_id FROM knit.normalized_runs")
        assert [row[0] for row in cur.fetchall()] == [initial["syncRunId"]]
        cur.execute("SELECT count(*) FROM knit.ats_applications WHERE integration_id = %s", (integration_id,))
        assert cur.fetchone()[0] == initial["eventsByType"]["record.new"]
    db.rollback()
    # The backfill's publish ran the example DAG again, which rebuilt its summary from the feed.
    assert _publish_extra(cluster, MAIN, backfill["dag_run_id"])["sync_runs"] == [initial["syncRunId"]]
    rebuilt = _example_caught_up(cluster, db, {initial["syncRunId"]}, seen)
    first = next(iter(rebuilt.values()))  # runs in the order they were created
    assert first["from_seq"] is None, "it started over: no watermark, so it read everything"
