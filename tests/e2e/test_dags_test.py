"""knit_ats_applications under ``airflow dags test``: initial then delta sync, tables equal to the source."""

from __future__ import annotations

from typing import Any

import pytest

from knit_devtools.airflow_runner import AirflowHome
from knit_devtools.stack import Stack
from knit_devtools.truth import differences

pytestmark = pytest.mark.e2e
MAIN = "knit_ats_applications"


@pytest.fixture(scope="module")
def home(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    return AirflowHome(tmp_path_factory.mktemp("airflow"), env=stack.airflow_env()).migrate()


def _runs(stack: Stack, integration_id: str) -> list[dict[str, Any]]:
    return sorted(stack.sim.runs(integration_id=integration_id), key=lambda run: run["requestedAt"])


def _normalized(db: Any) -> dict[str, Any]:
    with db.cursor() as cur:
        cur.execute("SELECT sync_run_id, normalized_at IS NOT NULL FROM knit_landing.sync_runs")
        found = dict(cur.fetchall())
    db.rollback()
    return found


def test_initial_then_delta_sync_end_in_the_source_state(stack: Stack, home: AirflowHome, db: Any) -> None:
    integrations = stack.integration_ids
    conf = {"integration_ids": integrations}

    first = home.dags_test(MAIN, conf)
    for integration_id in integrations:
        runs = _runs(stack, integration_id)
        assert [(r["syncType"], r["state"]) for r in runs] == [("initial_sync", "completed")]
        assert differences(db, stack.sim.truth(integration_id)) == []
    assert "initial_sync" in first.stdout + first.stderr
    assert all(_normalized(db).values())

    home.dags_test(MAIN, conf)
    for integration_id in integrations:
        runs = _runs(stack, integration_id)
        assert [r["syncType"] for r in runs] == ["initial_sync", "delta_sync"], "the plan asks for a delta"
        delta = runs[-1]
        assert delta["state"] == "completed"
        assert {"record.modified", "record.deleted", "record.new"} <= set(delta["eventsByType"])
        assert differences(db, stack.sim.truth(integration_id)) == []
    normalized = _normalized(db)
    assert len(normalized) == 2 * len(integrations)
    assert all(normalized.values())
