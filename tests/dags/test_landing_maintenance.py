"""knit_landing_maintenance: daily, paused until chosen, and under ``airflow dags test`` it creates the
partitions ahead and removes a normalized run's events past the retention, reporting what it removed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from knit_devtools.airflow_runner import AirflowHome

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "knit_landing_maintenance"
LAND = "SELECT knit_landing.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[])"


def test_the_dag_is_daily_and_paused_until_someone_chooses_it() -> None:
    from airflow_internals import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / f"{DAG_ID}.py")).dags[DAG_ID]
    assert dag.is_paused_upon_creation is True
    assert dag.schedule == "@daily"
    assert [task.task_id for task in dag.tasks] == ["maintain"]


def _land_normalized_run(conn: Any, run: str, days_ago: int) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    types = ["record.new", "record.new", "sync.events.allConsumed"]
    bodies = [
        json.dumps({"eventId": i, "eventType": t, "syncRunId": run, "eventData": {}})
        for i, t in zip(ids, types, strict=True)
    ]
    with conn, conn.cursor() as cur:
        cur.execute(
            LAND,
            (
                ids,
                types,
                ["delta_sync"] * 3,
                ["ats_applications"] * 3,
                ["sj"] * 3,
                [run] * 3,
                ["a1", "a2", None],
                ["int-1"] * 3,
                bodies,
            ),
        )
        shift = {"run": run, "days": days_ago, "ids": ids}
        cur.execute(
            "UPDATE knit_landing.events SET received_at = received_at - %(days)s * interval '1 day' "
            "WHERE sync_run_id = %(run)s",
            shift,
        )
        cur.execute(
            "UPDATE knit_landing.event_ids SET received_at = received_at - %(days)s * interval '1 day' "
            "WHERE event_id = ANY(%(ids)s)",
            shift,
        )
        cur.execute(
            "UPDATE knit_landing.sync_runs SET normalized_at = now(), "
            "first_received_at = first_received_at - %(days)s * interval '1 day', "
            "last_received_at = last_received_at - %(days)s * interval '1 day' WHERE sync_run_id = %(run)s",
            shift,
        )


def _count(conn: Any, sql: str) -> int:
    with conn, conn.cursor() as cur:
        cur.execute(sql)
        return int(cur.fetchone()[0])


@pytest.mark.e2e
def test_dags_test_removes_a_normalized_run_past_the_retention(
    landing_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    conn = psycopg2.connect(landing_url)
    try:
        _land_normalized_run(conn, "sr-old", 40)
        _land_normalized_run(conn, "sr-recent", 2)
        with conn, conn.cursor() as cur:
            # Nothing has created the weeks ahead since the store was set up.
            cur.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'knit_landing.events'::regclass AND c.relname ~ '^events_[0-9]{8}$' "
                "ORDER BY c.relname DESC LIMIT 1"
            )
            (last,) = cur.fetchone()
            cur.execute(f"DROP TABLE knit_landing.{last}")

        home = AirflowHome(
            tmp_path_factory.mktemp("airflow"),
            env={
                "AIRFLOW_CONN_KNIT_LANDING_DEFAULT": landing_url,
                "KNIT_LANDING_RETENTION": "30d",
            },
        ).migrate()
        done = home.dags_test(DAG_ID)
        log = done.stdout + done.stderr
        assert "1 event partitions created ahead" in log
        assert "retention 30d: prune" in log
        assert "removed: the events of 1 normalized runs: 3 deleted row by row" in log
        assert _count(conn, "SELECT count(*) FROM knit_landing.events WHERE sync_run_id = 'sr-old'") == 0
        assert _count(conn, "SELECT count(*) FROM knit_landing.events WHERE sync_run_id = 'sr-recent'") == 3
        assert _count(conn, "SELECT count(*) FROM knit_landing.sync_runs") == 2
        assert _count(conn, f"SELECT count(*) FROM pg_class WHERE relname = '{last}'") == 1
    finally:
        conn.close()
