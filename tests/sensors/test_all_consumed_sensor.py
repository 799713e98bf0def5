"""KnitAllConsumedSensor in real ``dag.test()`` runs against a real Postgres, in each of its modes."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowSensorTimeout, AirflowSkipException
from airflow.sdk import DAG, task, task_group
from airflow.utils.state import TaskInstanceState
from dag_helpers import WAIT, run_dag, states
from knit_landing_helpers import Lander, backend_check, ids

from knit_devtools.services import wait_until
from knit_provider.sensors.all_consumed import KnitAllConsumedSensor, completion_from_event, default_deferrable
from knit_provider.triggers.all_consumed import APPLICATION_NAME


class AfterFirstCheck(threading.Thread):
    """Hold sync_runs locked until the sensor's first check queues behind the lock, then run ``action``.

    So ``action`` (landing the allConsumed) provably happens after the sensor started looking: the sensor
    must really wait for it, in whatever mode it runs.
    """

    def __init__(self, url: str, action: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.action = action
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = psycopg2.connect(self.url)
            try:
                with conn.cursor() as cur:
                    cur.execute("LOCK TABLE knit_landing.sync_runs IN ACCESS EXCLUSIVE MODE")
                    wait_until(lambda: self._sensor_blocked(cur), WAIT, "the sensor's first check")
                conn.rollback()
            finally:
                conn.close()
            self.action()
        except BaseException as exc:
            self.error = exc

    @staticmethod
    def _sensor_blocked(cur: Any) -> bool:
        # pg_stat_activity is read once per transaction unless told to look again.
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock' AND query LIKE '%%sync_runs%%'"
        )
        return bool(cur.fetchone()[0])

    def finish(self) -> None:
        self.join(WAIT)
        if self.error:
            raise self.error


def sensor_dag(dag_id: str, out: Path, **sensor_kwargs: Any) -> DAG:
    """One sensor and a downstream task that records what the sensor handed on."""
    with DAG(dag_id, schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
        waited = KnitAllConsumedSensor(task_id="wait_all_consumed", **sensor_kwargs)

        @task
        def record(result: dict[str, Any]) -> None:
            out.write_text(json.dumps(result))

        record(waited.output)
    return dag


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_waits_for_all_consumed_in_each_mode(
    lander: Lander, landing_conn: str, tmp_path: Path, mode: str
) -> None:
    job, run = ids(mode)
    lander.records(job, f"{run}-older", 1)
    started = lander.now()
    lander.records(job, run, 3)
    lander.processed(job, run, processed=3, emitted=3)

    def complete() -> None:
        if mode == "deferrable":  # land it while the trigger listens: NOTIFY ends the wait
            wait_until(lambda: backend_check(landing_conn, APPLICATION_NAME, None), WAIT, "the trigger to listen")
        lander.all_consumed(job, run, 3)

    kwargs: dict[str, Any] = {"deferrable": True} if mode == "deferrable" else {"deferrable": False, "mode": mode}
    dag = sensor_dag(
        f"sensor_{mode}_{uuid.uuid4().hex[:6]}",
        tmp_path / "out.json",
        sync={"sync_job_id": job, "sync_run_id": None, "integration_id": "int-1", "started_at": started.isoformat()},
        poke_interval=1,
        timeout=WAIT,
        **kwargs,
    )
    helper = AfterFirstCheck(landing_conn, complete)
    helper.start()
    result = run_dag(dag)
    helper.finish()

    assert states(result) == {"wait_all_consumed": TaskInstanceState.SUCCESS, "record": TaskInstanceState.SUCCESS}
    assert json.loads((tmp_path / "out.json").read_text()) == {
        "sync_job_id": job,
        "sync_run_id": run,
        "record_events": 3,
        "processed": 3,
        "emitted": 3,
        "consumed": 3,
    }


@pytest.mark.parametrize(
    ("deferrable", "soft_fail", "expected"),
    [
        (True, False, TaskInstanceState.FAILED),
        (True, True, TaskInstanceState.SKIPPED),
        (False, True, TaskInstanceState.SKIPPED),
    ],
)
def test_timeout_fails_or_with_soft_fail_skips(
    lander: Lander, landing_conn: str, tmp_path: Path, deferrable: bool, soft_fail: bool, expected: TaskInstanceState
) -> None:
    job, run = ids("late")
    lander.records(job, run, 1)
    dag = sensor_dag(
        f"sensor_timeout_{uuid.uuid4().hex[:6]}",
        tmp_path / "out.json",
        sync_job_id=job,
        sync_run_id=run,
        deferrable=deferrable,
        soft_fail=soft_fail,
        poke_interval=0.2,
        timeout=1,
    )
    result = run_dag(dag)
    assert states(result)["wait_all_consumed"] == expected
    assert not (tmp_path / "out.json").exists()


def test_mapped_task_group_fed_by_each_start_sync_xcom(lander: Lander, landing_conn: str, tmp_path: Path) -> None:
    started = lander.now().isoformat()
    syncs = []
    for integration in ("int-a", "int-b"):
        job, run = ids(integration)
        lander.records(job, run, 2 if integration == "int-a" else 5)
        lander.all_consumed(job, run, 2 if integration == "int-a" else 5)
        syncs.append({"sync_job_id": job, "sync_run_id": None, "integration_id": integration, "started_at": started})

    with DAG(f"sensor_mapped_{uuid.uuid4().hex[:6]}", schedule=None, start_date=datetime(2025, 1, 1)) as dag:

        @task
        def start_sync(integration: str) -> dict[str, Any]:
            return next(s for s in syncs if s["integration_id"] == integration)  # stands in for StartSyncOperator

        @task
        def record(integration: str, result: dict[str, Any]) -> None:
            (tmp_path / f"{integration}.json").write_text(json.dumps(result))

        @task_group
        def per_integration(integration: str) -> None:
            started_sync = start_sync(integration)
            waited = KnitAllConsumedSensor(
                task_id="wait_all_consumed", sync=started_sync, poke_interval=1, timeout=WAIT
            )
            record(integration, waited.output)

        per_integration.expand(integration=["int-a", "int-b"])

    result = run_dag(dag)
    assert set(states(result).values()) == {TaskInstanceState.SUCCESS}
    for sync, count in zip(syncs, (2, 5), strict=True):
        got = json.loads((tmp_path / f"{sync['integration_id']}.json").read_text())
        assert (got["sync_job_id"], got["record_events"]) == (sync["sync_job_id"], count)


def test_poke_mode_timeout_reports_what_landed(lander: Lander, landing_conn: str) -> None:
    job, run = ids("report")
    lander.records(job, run, 4)
    lander.processed(job, run, processed=9, emitted=6, complete=True)
    sensor = KnitAllConsumedSensor(
        task_id="wait", sync_job_id=job, sync_run_id=run, deferrable=False, poke_interval=0.1, timeout=0.3
    )
    with pytest.raises(AirflowSensorTimeout) as raised:
        sensor.execute({})  # type: ignore[arg-type]
    assert f"run {run} of job {job}" in str(raised.value)
    assert "4 record events" in str(raised.value)
    assert "processed=9, emitted=6 (final)" in str(raised.value)

    sensor = KnitAllConsumedSensor(
        task_id="wait_soft",
        sync_job_id=job,
        sync_run_id=run,
        deferrable=False,
        poke_interval=0.1,
        timeout=0.3,
        soft_fail=True,
    )
    with pytest.raises(AirflowSkipException, match="4 record events"):
        sensor.execute({})  # type: ignore[arg-type]


def test_checks_once_before_deferring(lander: Lander, landing_conn: str) -> None:
    job, run = ids("done")
    lander.records(job, run, 2)
    lander.all_consumed(job, run, 2)
    sensor = KnitAllConsumedSensor(task_id="wait", sync_job_id=job, sync_run_id=run, deferrable=True)
    # Already complete: returns without deferring (a deferral would raise TaskDeferred).
    assert sensor.execute({}) == {  # type: ignore[arg-type]
        "sync_job_id": job,
        "sync_run_id": run,
        "record_events": 2,
        "processed": 2,
        "emitted": 2,
        "consumed": 2,
    }


def test_not_yet_complete_it_defers_the_wait_the_operator_defers_to(lander: Lander, landing_conn: str) -> None:
    """The sensor and StartSyncOperator(wait_for_completion=True) share one wait: trigger, timeouts, ending."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    from knit_provider.sensors.all_consumed import defer_timeout, wait_trigger

    job, run = ids("open")
    lander.records(job, run, 1)
    sensor = KnitAllConsumedSensor(
        task_id="wait", sync_job_id=job, sync_run_id=run, deferrable=True, poke_interval=15, timeout=600
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    expected = wait_trigger(sensor.run_selector(), "knit_landing_default", 15, 600)
    assert deferred.value.trigger.serialize()[0] == expected.serialize()[0]
    assert {k: v for k, v in deferred.value.trigger.serialize()[1].items() if k != "deadline"} == {
        k: v for k, v in expected.serialize()[1].items() if k != "deadline"
    }
    assert deferred.value.timeout == defer_timeout(600) == timedelta(seconds=600) + timedelta(minutes=5)


def test_completion_from_event() -> None:
    success = {
        "status": "success",
        "message": "ok",
        "sync_job_id": "j",
        "sync_run_id": "r",
        "record_events": 1,
        "processed": 1,
        "emitted": 1,
        "consumed": 1,
    }
    assert completion_from_event(success) == {
        "sync_job_id": "j",
        "sync_run_id": "r",
        "record_events": 1,
        "processed": 1,
        "emitted": 1,
        "consumed": 1,
    }
    with pytest.raises(AirflowSensorTimeout, match="3 record events landed"):
        completion_from_event({**success, "status": "timeout", "message": "3 record events landed"})
    with pytest.raises(AirflowException, match="no such table"):
        completion_from_event({**success, "status": "error", "message": "no such table"})
    with pytest.raises(AirflowException, match="Expected an AllConsumedTrigger event"):
        completion_from_event({"status": "weird"})


@pytest.mark.parametrize(
    "sync",
    [
        {"sync_job_id": "j", "sync_run_id": "r", "started_at": None},
        '{"sync_job_id": "j", "sync_run_id": "r", "started_at": null}',
        "{'sync_job_id': 'j', 'sync_run_id': 'r', 'started_at': None}",
    ],
)
def test_sync_accepts_the_xcom_dict_or_its_rendered_text(sync: Any) -> None:
    sensor = KnitAllConsumedSensor(task_id="wait", sync=sync)
    selector = sensor.run_selector()
    assert (selector.sync_job_id, selector.sync_run_id) == ("j", "r")


def test_fields_override_sync_and_rendered_none_is_absent() -> None:
    sensor = KnitAllConsumedSensor(
        task_id="wait",
        sync={"sync_job_id": "j", "sync_run_id": "r1", "started_at": "2025-05-01T10:00:00+00:00"},
        sync_run_id="None",
        sync_job_id="j2",
    )
    selector = sensor.run_selector()
    assert (selector.sync_job_id, selector.sync_run_id) == ("j2", "r1")


def test_bad_arguments_fail_with_a_clear_message() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises(AirflowFailException, match="Cannot tell which sync run"):
        KnitAllConsumedSensor(task_id="a", sync_job_id="j").run_selector()
    with pytest.raises(AirflowFailException, match="sync='start_sync' is not a mapping") as raised:
        KnitAllConsumedSensor(task_id="b", sync="start_sync").run_selector()
    assert "sync=start_sync.output" in str(raised.value)
    with pytest.raises(AirflowFailException, match="started_after='2025-05-01T10:00:00' has no time zone"):
        KnitAllConsumedSensor(task_id="c", sync_job_id="j", started_after="2025-05-01T10:00:00").run_selector()


def test_deferrable_by_default_unless_the_deployment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    assert default_deferrable() is True
    assert KnitAllConsumedSensor(task_id="a", sync_run_id="r").deferrable is True
    assert KnitAllConsumedSensor(task_id="b", sync_run_id="r", mode="reschedule").deferrable is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    assert KnitAllConsumedSensor(task_id="c", sync_run_id="r").deferrable is False
