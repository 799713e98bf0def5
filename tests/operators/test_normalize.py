"""KnitNormalizeRunsOperator on a real landing Postgres: each way of choosing runs, reconciliation, a DAG run."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest

from knit_provider.landing.migrate import migrate
from knit_provider.operators.normalize import KnitNormalizeRunsOperator
from knit_provider.settings import Schemas, quote_ident

SCHEMAS = Schemas(landing="op_landing", target="op_knit")
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def landing(pg_url: str) -> str:
    conn = psycopg2.connect(pg_url)
    try:
        migrate(conn, SCHEMAS)
    finally:
        conn.close()
    return pg_url


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch, landing: str) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", landing)
    return landing


def land_run(url: str, apps: list[str], *, emitted: int | None = None, complete: bool = True) -> str:
    """Land one run of record.new events (and its allConsumed) through land_events; return its id."""
    run_id = f"sr-op-{next(_ids)}"
    envelopes = [
        {
            "eventId": f"{run_id}-{a}",
            "eventType": "record.new",
            "syncRunId": run_id,
            "recordId": a,
            "syncDataType": "ats_applications",
            "eventData": {"info": {"id": a, "status": "ACTIVE"}, "currentStage": {"id": "s1", "name": "New"}},
        }
        for a in apps
    ]
    if complete:
        count = len(apps) if emitted is None else emitted
        envelopes.append(
            {
                "eventId": f"{run_id}-done",
                "eventType": "sync.events.allConsumed",
                "syncRunId": run_id,
                "syncDataType": "ats_applications",
                "eventData": {"emitted": count, "consumed": count, "startedAt": "1700000000000"},
            }
        )
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {quote_ident(SCHEMAS.landing)}.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[])",
            [
                [e["eventId"] for e in envelopes],
                [e["eventType"] for e in envelopes],
                ["delta_sync"] * len(envelopes),
                ["ats_applications"] * len(envelopes),
                ["sj-op"] * len(envelopes),
                [run_id] * len(envelopes),
                [e.get("recordId") for e in envelopes],
                ["int-op"] * len(envelopes),
                [json.dumps(e) for e in envelopes],
            ],
        )
    conn.close()
    return run_id


def operator(**kwargs: Any) -> KnitNormalizeRunsOperator:
    return KnitNormalizeRunsOperator(
        task_id="normalize", landing_schema=SCHEMAS.landing, target_schema=SCHEMAS.target, **kwargs
    )


def applications(url: str) -> set[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT application_id FROM {quote_ident(SCHEMAS.target)}.ats_applications")
        found = {row[0] for row in cur.fetchall()}
    conn.close()
    return found


def test_run_ids_are_normalized_reconciled_and_summarized(connection: str) -> None:
    run_id = land_run(connection, ["op-a1", "op-a2"])
    summary = operator(run_ids=[run_id, "", "None"]).execute({})  # type: ignore[arg-type]
    assert summary["normalized"] == 1
    assert summary["applications_changed"] == 2
    (run,) = summary["runs"]
    assert (run["sync_run_id"], run["record_events"], run["complete"]) == (run_id, 2, True)
    (rec,) = summary["reconciliations"]
    assert (rec["landed"], rec["emitted"], rec["ok"]) == (2, 2, True)
    assert {"op-a1", "op-a2"} <= applications(connection)
    json.dumps(summary)  # an XCom must serialize


def db_now(url: str) -> datetime:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        (now,) = cur.fetchone()
    conn.close()
    return now


def test_pending_and_interval_choose_the_runs(connection: str) -> None:
    before = db_now(connection)  # completion times are the landing database's clock
    first = land_run(connection, ["op-p1"])
    second = land_run(connection, ["op-p2"])
    land_run(connection, ["op-open"], complete=False)
    summary = operator(pending=True).execute({})  # type: ignore[arg-type]
    names = [r["sync_run_id"] for r in summary["runs"]]
    assert names[-2:] == [first, second]  # oldest first; the open run is not pending
    assert operator(pending=True).execute({})["runs"] == []  # type: ignore[arg-type]

    later = db_now(connection)
    replay = operator(since=before.isoformat(), until=later).execute({})  # type: ignore[arg-type]
    assert [r["sync_run_id"] for r in replay["runs"]] == [first, second]
    assert replay["applications_changed"] == 0  # already normalized: a replay changes nothing
    empty = operator(since=later, until=later + timedelta(days=1)).execute({})  # type: ignore[arg-type]
    assert empty["normalized"] == 0


def test_a_shortfall_fails_without_retry_with_both_numbers(connection: str) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    run_id = land_run(connection, ["op-s1"], emitted=4)
    with pytest.raises(AirflowFailException, match="1 distinct record events landed, but Knit emitted 4"):
        operator(run_ids=run_id).execute({})  # type: ignore[arg-type]
    assert "op-s1" in applications(connection)  # normalized all the same: nothing landed is held back


def test_an_incomplete_run_is_refused_unless_forced(connection: str) -> None:
    from knit_provider.normalize import RunNotCompleteError

    run_id = land_run(connection, ["op-f1"], complete=False)
    with pytest.raises(RunNotCompleteError):
        operator(run_ids=[run_id]).execute({})  # type: ignore[arg-type]
    summary = operator(run_ids=[run_id], force=True).execute({})  # type: ignore[arg-type]
    assert summary["runs"][0]["complete"] is False
    assert summary["reconciliations"] == []


def test_bad_arguments_fail_the_task_without_retries_naming_the_argument(connection: str) -> None:
    """Mapped (``expand``) operators are built in the worker: a ValueError there would be retried."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises(AirflowFailException, match="exactly one of"):
        operator()
    with pytest.raises(AirflowFailException, match="exactly one of"):
        operator(run_ids=["a"], pending=True)
    with pytest.raises(AirflowFailException, match="go together"):
        operator(since="2025-01-01T00:00:00+00:00")
    with pytest.raises(AirflowFailException, match="since='2025-01-02T00:00:00' has no time zone"):
        operator(since="2025-01-02T00:00:00", until="2025-01-03T00:00:00Z").execute({})  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match="run_ids must be a list of strings"):
        operator(run_ids=[7]).execute({})  # type: ignore[arg-type, list-item]


def test_rendered_run_id_lists_are_read(connection: str) -> None:
    first, second = land_run(connection, ["op-r1"]), land_run(connection, ["op-r2"])
    for rendered in (f"['{first}', '{second}', '{first}']", f'["{first}", "{second}"]', f"{first}, {second}"):
        summary = operator(run_ids=rendered).execute({})  # type: ignore[arg-type]
        assert [r["sync_run_id"] for r in summary["runs"]] == [first, second]
    assert operator(run_ids="None").execute({})["runs"] == []  # type: ignore[arg-type]


def normalize_dag() -> Any:
    """A templated run id list from params, and a downstream task reading the operator's summary."""
    from airflow.sdk import DAG, task

    with DAG(
        "knit_normalize_operator_test", schedule=None, start_date=datetime(2024, 1, 1), params={"run_ids": []}
    ) as dag:
        normalized = KnitNormalizeRunsOperator(
            task_id="normalize",
            run_ids="{{ params.run_ids }}",
            landing_schema=SCHEMAS.landing,
            target_schema=SCHEMAS.target,
        )

        @task
        def report(summary: dict[str, Any]) -> list[str]:
            return [f"{r['sync_run_id']}:{r['applications']}" for r in summary["runs"]]

        report(normalized.output)
    return dag


def test_in_a_dag_run_the_summary_reaches_the_next_task(
    airflow_db: Any, connection: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow import settings
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    (tmp_path / "knit_normalize_dags.py").write_text(
        f"# airflow DAG file for the normalize operator tests\nfrom {__name__} import normalize_dag\n"
        "dag = normalize_dag()\n"
    )
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    run_id = land_run(connection, ["op-d1", "op-d2", "op-d3"])
    run = normalize_dag().test(run_conf={"run_ids": [run_id]})
    assert run.state == DagRunState.SUCCESS
    with create_session() as session:
        (row,) = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id="report", key="return_value")
            .all()
        )
        assert XComModel.deserialize_value(row) == [f"{run_id}:3"]


def test_lineage_names_landing_and_normalized_tables_with_the_rows_changed(
    connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "console")  # any transport turns the provider on
    op = operator(run_ids=land_run(connection, ["op-l1", "op-l2", "op-l3"]))
    assert op.get_openlineage_facets_on_complete(None) is None, "before it ran, it read and wrote nothing"
    op.execute({})  # type: ignore[arg-type]

    lineage = op.get_openlineage_facets_on_complete(None)

    url = urlsplit(connection)
    database = url.path.lstrip("/")
    assert {d.namespace for d in lineage.inputs + lineage.outputs} == {f"postgres://{url.hostname}:{url.port}"}
    assert [d.name for d in lineage.inputs] == [f"{database}.op_landing.events", f"{database}.op_landing.sync_runs"]
    outputs = {d.name.removeprefix(f"{database}.op_knit."): d for d in lineage.outputs}
    assert set(outputs) >= {"ats_applications", "ats_candidates", "ats_application_interviews", "normalized_runs"}
    assert lineage.inputs[0].inputFacets["inputStatistics"].rowCount == 3
    assert outputs["ats_applications"].outputFacets["outputStatistics"].rowCount == 3
    columns = [f.name for f in outputs["ats_applications"].facets["schema"].fields]
    assert columns[:2] == ["integration_id", "application_id"]
