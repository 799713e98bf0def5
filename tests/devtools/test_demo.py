"""``make demo``: its database URL reaches the demo whole, each step's line names the run of its own type, and
the extra of the asset event its publish emitted is printed after it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from demo_data import application, job, land_run

from knit_devtools.airflow_runner import AirflowHome
from knit_devtools.demo import DATABASE_URL_ENV, format_extra, last_run
from knit_provider.chaining import change_extra, change_watermark
from knit_provider.data_types import DataTypeSpec, get
from knit_provider.normalize import normalize_runs
from knit_provider.settings import Schemas

ROOT = Path(__file__).resolve().parents[2]
APPLICATIONS, JOBS = get("ats_applications"), get("ats_jobs")


@pytest.fixture(scope="module")
def conn(landing_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(landing_url)
    yield connection
    connection.close()


def test_each_step_describes_the_latest_run_of_its_own_data_type(conn: Any, landing_url: str) -> None:
    it = "int-steps"
    applications_run = land_run(landing_url, it, "ats_applications", "initial_sync", [application("a1", "j1")])
    # Landed after the applications' run: a line not filtered by data type would describe this one.
    jobs = [job("j1", "Designer", "Design"), job("j2", "QA", "QA")]
    jobs_run = land_run(landing_url, it, "ats_jobs", "initial_sync", jobs)
    landed = f"initial_sync run {applications_run}: 1 record events landed"

    assert last_run(conn, it, APPLICATIONS) == f"{landed}, NOT normalized"
    normalize_runs(conn, [applications_run, jobs_run], Schemas.from_env())
    assert last_run(conn, it, APPLICATIONS) == f"{landed}, normalized (1 applications changed)"
    assert last_run(conn, it, JOBS) == (
        f"initial_sync run {jobs_run}: 2 record events landed, normalized (2 jobs changed)"
    )
    assert last_run(conn, "int-none", JOBS) == "no ats_jobs run landed"


def _store_asset_event(home: AirflowHome, spec: DataTypeSpec, dag_id: str, extra: dict[str, Any]) -> int:
    """Record an event of ``spec``'s asset emitted by ``dag_id``'s publish in the home's metadata database, in
    Airflow's own tables (created from its models); return its id."""
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import create_engine, insert, select

    engine = create_engine(home.metadata_url)
    try:
        with engine.begin() as db:
            for table in (AssetModel.__table__, AssetEvent.__table__):
                table.create(db, checkfirst=True)
            asset_id = db.scalar(select(AssetModel.id).where(AssetModel.name == spec.asset_name))
            if asset_id is None:  # its URI as Airflow stores it, normalized
                asset = {"name": spec.asset_name, "uri": f"{spec.asset_uri}/", "group": "knit", "extra": {}}
                asset_id = db.scalar(insert(AssetModel).values(**asset).returning(AssetModel.id))
            event = {"asset_id": asset_id, "extra": extra, "source_dag_id": dag_id, "source_task_id": "publish"}
            return int(
                db.scalar(
                    insert(AssetEvent).values(**event, timestamp=datetime.now(timezone.utc)).returning(AssetEvent.id)
                )
            )
    finally:
        engine.dispose()


def test_each_step_prints_the_extra_of_the_asset_event_its_publish_emitted(
    conn: Any, landing_url: str, tmp_path: Path
) -> None:
    """The extra a publish attaches (built, as the publish task builds it, from the normalize task's XCom),
    read back from Airflow's asset_event of the type's asset and that DAG, newer than the one before the run."""
    it, schemas = "int-extras", Schemas.from_env()
    run = land_run(landing_url, it, "ats_applications", "initial_sync", [application(f"e{n}", "j1") for n in range(3)])
    summary = {"data_type": APPLICATIONS.name, "runs": [r.as_dict() for r in normalize_runs(conn, [run], schemas)]}
    extra = change_extra(APPLICATIONS.name, [summary], change_watermark(conn, schemas))
    home = AirflowHome(tmp_path / "airflow")
    earlier = _store_asset_event(home, APPLICATIONS, APPLICATIONS.dag_id, {})
    published = _store_asset_event(home, APPLICATIONS, APPLICATIONS.dag_id, extra)
    # Newer, but not this DAG's publish of this asset: the on-delivery DAG's, and the jobs' asset.
    _store_asset_event(home, APPLICATIONS, APPLICATIONS.on_delivery_dag_id, {})
    _store_asset_event(home, JOBS, APPLICATIONS.dag_id, {})

    event = home.latest_asset_event(APPLICATIONS.asset_name, APPLICATIONS.dag_id, after=earlier)
    assert event is not None
    assert event.id == published
    lines = format_extra(APPLICATIONS, event)
    watermark = extra["change_watermark"]
    assert isinstance(watermark, int)
    assert lines[0] == (
        f"asset event knit://ats_applications (id {published}), extra: data_type ats_applications, "
        f'integrations ["{it}"], sync_runs ["{run}"], change_watermark {watermark}'
    )
    assert lines[1].split() == ["table", "inserted", "updated", "soft_deleted", "deleted"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["ats_applications"] == ["3", "0", "0", "0"], "the applications the initial sync landed"
    assert list(rows) == list(APPLICATIONS.tables), "one line per table of the type, in its order"
    assert home.latest_asset_event(APPLICATIONS.asset_name, APPLICATIONS.dag_id, after=published) is None
    assert format_extra(APPLICATIONS, None) == ["NO asset event of knit://ats_applications from this run"]


def test_make_demo_hands_a_database_url_holding_an_ampersand_to_the_demo_whole() -> None:
    # The port after "&" is refused by the demo's check of the URL, before it starts anything: the
    # message naming it shows the URL arrived whole (a shell splitting at "&" would have lost it).
    url = "postgresql://demo@/knit?sslmode=require&port=abc"
    done = subprocess.run(
        # BIN: this interpreter's venv; -o: never (re)install the venv from a test.
        ["make", "-s", "-o", ".venv/.installed", f"BIN={Path(sys.executable).parent}", "demo"],
        cwd=ROOT,
        env={**os.environ, DATABASE_URL_ENV: url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "--database-url: The database URL's port 'abc' is not a port number" in done.stderr
