"""The data-type seam holds: a type defined only in ``third_type/`` (a spec, one table, three SQL files) lands,
normalizes, reconciles, takes part in snapshots and the ledger, and gets its DAGs and asset, through the
provider's own code with nothing changed outside its folder."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from normalize_landing import Lander, application, rows
from third_type import SPEC

from knit_devtools.airflow_runner import AirflowHome
from knit_provider.data_types import enabled, get, register
from knit_provider.data_types.registry import unregister
from knit_provider.normalize import normalize_runs
from knit_provider.normalize.reconcile import reconcile_run
from knit_provider.settings import Schemas


@pytest.fixture(autouse=True)
def offices() -> Iterator[None]:
    register(SPEC)
    yield
    unregister(SPEC.name)


def _office(office_id: str, name: str, location: str = "Austin, TX, US") -> dict[str, Any]:
    return {"info": {"id": office_id, "name": name, "location": location}}


def _table(conn: Any, schemas: Schemas) -> dict[str, tuple[Any, ...]]:
    found = rows(conn, schemas, "SELECT office_id, name, is_deleted, snapshot_run_id FROM {t}.ats_offices")
    return {r["office_id"]: (r["name"], r["is_deleted"], r["snapshot_run_id"]) for r in found}


def test_a_type_defined_in_its_own_folder_normalizes_reconciles_and_snapshots(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    first = lander.initial(data_type=SPEC.name)
    for office_id, name in (("o1", "Austin"), ("o2", "Berlin"), ("o3", "Chennai")):
        first.new(office_id, data=_office(office_id, name))
    first.complete()
    (result,) = normalize_runs(conn, [first.run_id], schemas)
    assert (result.data_type, result.records, result.records_changed, result.snapshot) == (SPEC.name, 3, 3, "applied")
    assert "3 offices (3 changed)" in result.describe()
    assert reconcile_run(conn, first.run_id, schemas).ok

    delta = lander.run(data_type=SPEC.name)
    delta.modified("o1", data=_office("o1", "Austin HQ"))
    delta.deleted("o2", data={"officeId": "o2"})
    delta.complete()
    (changed,) = normalize_runs(conn, [delta.run_id], schemas)
    assert changed.records_changed == 2
    # Its table is in the change feed: the rows the delta modified and deleted carry the delta's value.
    assert changed.tables == {SPEC.record_table: {"inserted": 0, "updated": 2, "soft_deleted": 1, "deleted": 0}}
    marked = rows(
        conn,
        schemas,
        "SELECT office_id FROM {t}.ats_offices WHERE knit_changed_seq = %s ORDER BY 1",
        (changed.changed_seq,),
    )
    assert [row["office_id"] for row in marked] == ["o1", "o2"]

    # A full resync lists only o1: the shared snapshot step deletes o3 (o2 keeps its own deletion).
    resync = lander.initial(data_type=SPEC.name)
    resync.new("o1", data=_office("o1", "Austin HQ"))
    resync.complete()
    (snapshot,) = normalize_runs(conn, [resync.run_id], schemas)
    assert (snapshot.snapshot, snapshot.snapshot_deleted) == ("applied", 1)
    assert _table(conn, schemas) == {
        "o1": ("Austin HQ", False, None),
        "o2": ("Berlin", True, None),
        "o3": ("Chennai", True, resync.run_id),
    }

    # Again: nothing changes; the ledger names the type and its counts.
    again = normalize_runs(conn, [first.run_id, delta.run_id, resync.run_id], schemas)
    assert [r.records_changed for r in again] == [0, 0, 0]
    ledger = rows(conn, schemas, "SELECT data_type, records, applications, times_normalized FROM {t}.normalized_runs")
    assert ledger == [
        {"data_type": SPEC.name, "records": n, "applications": None, "times_normalized": 2} for n in (3, 2, 1)
    ]


def test_snapshots_of_one_type_never_delete_another_types_records(conn: Any, schemas: Schemas, lander: Lander) -> None:
    offices = lander.initial(data_type=SPEC.name)
    offices.new("o1", data=_office("o1", "Austin"))
    offices.complete()
    applications = lander.initial()
    applications.new("a1", data=application("a1"))
    applications.complete()
    results = normalize_runs(conn, [offices.run_id, applications.run_id], schemas)
    assert [(r.data_type, r.snapshot, r.snapshot_deleted) for r in results] == [
        (SPEC.name, "applied", 0),
        ("ats_applications", "applied", 0),
    ]
    assert _table(conn, schemas) == {"o1": ("Austin", False, None)}


def test_it_gets_its_dags_and_asset_from_the_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    from knit_provider.dag_factory import completed_runs_asset, on_delivery_dag, sync_dag

    monkeypatch.setenv("KNIT_DATA_TYPES", f"ats_applications,{SPEC.name}")
    assert [spec.name for spec in enabled()] == ["ats_applications", SPEC.name]
    assert get(SPEC.name) is SPEC
    scheduled, delivered = sync_dag(SPEC), on_delivery_dag(SPEC)
    assert (scheduled.dag_id, delivered.dag_id) == ("knit_ats_offices", "knit_ats_offices_on_delivery")
    (published,) = scheduled.get_task("publish").outlets
    assert published.uri.rstrip("/") == "knit://ats_offices"
    assert delivered.get_task("normalize_and_reconcile").outlets == [published]
    assert scheduled.params["models"] == ["office_info"]
    assert completed_runs_asset(SPEC).uri.rstrip("/") == "knit://knit_landing/completed_runs/ats_offices"


def test_under_airflow_its_dag_normalizes_and_publishes_its_asset(
    conn: Any, schemas: Schemas, lander: Lander, pg_url: str, tmp_path: Path
) -> None:
    """The type reaches Airflow's processes the way a deployment's own type would: one line,
    ``KNIT_DATA_TYPE_MODULES``, makes it known and synced (its DAGs beside the built-in types')."""
    from knit_provider.database_urls import connection_from_url

    run = lander.run(data_type=SPEC.name)
    run.new("o1", data=_office("o1", "Austin"))
    run.complete()
    env = {
        "KNIT_DATA_TYPE_MODULES": "third_type",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        "KNIT_LANDING_SCHEMA": schemas.landing,
        "KNIT_SCHEMA": schemas.target,
        "AIRFLOW_CONN_KNIT_LANDING_DEFAULT": json.dumps(connection_from_url(pg_url)),
        # Never called: with scheduling=knit the DAG starts no sync.
        "AIRFLOW_CONN_KNIT_DEFAULT": json.dumps({"conn_type": "knit", "host": "http://127.0.0.1:9", "password": "x"}),
    }
    home = AirflowHome(tmp_path / "airflow", env=env).migrate()
    home.dags_test("knit_ats_offices", {"scheduling": "knit"})

    assert _table(conn, schemas) == {"o1": ("Austin", False, None)}
    assert rows(conn, schemas, "SELECT data_type, times_normalized FROM {t}.normalized_runs") == [
        {"data_type": SPEC.name, "times_normalized": 1}
    ]
    with sqlite3.connect(home.path / "airflow.db") as metadata:
        published = metadata.execute(
            "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id ORDER BY e.id"
        ).fetchall()
    assert [uri.rstrip("/") for (uri,) in published] == ["knit://ats_offices"]
