"""OpenLineage under ``airflow dags test``: what start_sync, normalize, reconcile and maintenance report.

The OpenLineage provider is configured with its file transport (one JSON event per line), and the
DAGs run for real against the simulator, the receiver and Postgres. Each COMPLETE event must name the
Knit dataset and the Postgres tables as ``knit_provider.lineage`` documents, with the tables' schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from knit_devtools.airflow_runner import AirflowHome
from knit_devtools.stack import Stack
from knit_provider.data_types import get
from knit_provider.lineage import LEDGER

pytestmark = pytest.mark.e2e
# What normalizing an applications run writes: its type's tables, then the ledger.
NORMALIZED_TABLES = (*get("ats_applications").tables, LEDGER)
MAIN = "knit_ats_applications"
MAINTENANCE = "knit_landing_maintenance"


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openlineage") / "events.jsonl"


@pytest.fixture(scope="module")
def home(stack: Stack, events_file: Path, tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    env = {
        **stack.airflow_env(),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "knit-e2e",
        # The listener gives up on an event after this long (default 10s); on a loaded machine the
        # lineage queries must not lose the race against that bound and leave an event out.
        "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "120",
    }
    return AirflowHome(tmp_path_factory.mktemp("airflow"), env=env).migrate()


def _complete_events(events_file: Path, job: str) -> list[dict[str, Any]]:
    lines = events_file.read_text().splitlines() if events_file.exists() else []
    events = [json.loads(line) for line in lines if line.strip()]
    return [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == job]


def _columns(db: Any, schema: str, table: str) -> list[dict[str, str]]:
    """The schema facet's fields as the table has them: name and Postgres type, in column order."""
    with db.cursor() as cur:
        cur.execute(
            "SELECT column_name, udt_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        )
        rows = cur.fetchall()
    db.rollback()
    assert rows, f"{schema}.{table} has no columns: the test expects the migrated tables"
    return [{"name": name, "type": udt} for name, udt in rows]


def _named(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def _fields(dataset: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": f["name"], "type": f["type"]} for f in dataset["facets"]["schema"]["fields"]]


def test_main_dag_reports_knit_landing_and_normalized_tables(
    stack: Stack, home: AirflowHome, events_file: Path, db: Any
) -> None:
    home.dags_test(MAIN, {"integration_ids": stack.integration_ids})

    url = urlsplit(stack.database_url)
    postgres = f"postgres://{url.hostname}:{url.port}"
    database = url.path.lstrip("/")
    knit = f"knit://{urlsplit(stack.simulator_url).netloc}"
    events = (postgres, f"{database}.knit_landing.events")
    sync_runs = (postgres, f"{database}.knit_landing.sync_runs")

    started = _complete_events(events_file, f"{MAIN}.sync.start_sync")
    assert len(started) == len(stack.integration_ids), "one COMPLETE per mapped start_sync"
    assert sorted(_named(e["inputs"])[0] for e in started) == [
        (knit, f"{integration}.ats_applications") for integration in sorted(stack.integration_ids)
    ]
    for event in started:
        assert _named(event["outputs"]) == [events]
        assert _fields(event["outputs"][0]) == _columns(db, "knit_landing", "events")

    normalized = _complete_events(events_file, f"{MAIN}.sync.normalize")
    assert len(normalized) == len(stack.integration_ids)
    for event in normalized:
        assert _named(event["inputs"]) == [events, sync_runs]
        assert _named(event["outputs"]) == [(postgres, f"{database}.knit.{table}") for table in NORMALIZED_TABLES]
        for output, table in zip(event["outputs"], NORMALIZED_TABLES, strict=True):
            assert _fields(output) == _columns(db, "knit", table)
    # An initial sync writes every application of the integration once: the counts add up to the table.
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM knit.ats_applications")
        (applications,) = cur.fetchone()
    db.rollback()
    changed = [
        o["outputFacets"]["outputStatistics"]["rowCount"]
        for e in normalized
        for o in e["outputs"]
        if o["name"].endswith(".knit.ats_applications")
    ]
    assert len(changed) == len(stack.integration_ids)
    assert sum(changed) == applications > 0
    read = [e["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] for e in normalized]
    assert all(n > 0 for n in read)

    (skipped,) = _complete_events(events_file, f"{MAIN}.normalize_backfill_interval")
    assert (skipped["inputs"], skipped["outputs"]) == ([], []), "a task skipped before it ran read nothing"

    reconciled = _complete_events(events_file, f"{MAIN}.sync.reconcile")
    assert len(reconciled) == len(stack.integration_ids)
    for event in reconciled:
        assert _named(event["inputs"]) == [events, sync_runs]
        assert _fields(event["inputs"][1]) == _columns(db, "knit_landing", "sync_runs")
        assert event["outputs"] == []


def test_maintenance_reports_the_landing_tables_it_prunes(
    stack: Stack, home: AirflowHome, events_file: Path, db: Any
) -> None:
    home.dags_test(MAINTENANCE)

    url = urlsplit(stack.database_url)
    prefix = f"{url.path.lstrip('/')}.knit_landing"
    (event,) = _complete_events(events_file, f"{MAINTENANCE}.maintain")
    assert _named(event["inputs"]) == [(f"postgres://{url.hostname}:{url.port}", f"{prefix}.sync_runs")]
    assert [d["name"] for d in event["outputs"]] == [f"{prefix}.events", f"{prefix}.event_ids"]
    assert _fields(event["outputs"][1]) == _columns(db, "knit_landing", "event_ids")
