"""Who may open the Knit syncs page, and which DAG runs it shows them: Airflow's own API app, a real login.

The page is requested from Airflow's API app as the API server builds it (the plugin mounted at
``/knit-syncs``), with a bearer token from Airflow's login endpoint. The auth manager is Airflow's
``SimpleAuthManager`` with per-DAG grants (``DagScopedAuthManager``): each user may read the DAGs
listed for them in ``GRANTS`` and nothing else. Two data types are enabled (the default), so the
Knit DAGs are five. Here, not under ``tests/ui``, so that ``make test-compat`` runs it on the oldest
supported Airflow too.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from knit_landing_helpers import Lander, ids

from knit_provider.ui.app import knit_dag_ids

KNIT_DAG_IDS = knit_dag_ids()
#: Every DAG, for the user who may read all of them.
EVERY_DAG = "*"
THEIR_DAG = "their_team_reports"
#: The DAGs of ats_applications and onboarding: all the Knit DAGs there were before ats_jobs.
APPLICATION_DAGS = frozenset(
    {"knit_ats_applications", "knit_ats_applications_on_delivery", "knit_integration_onboarding"}
)
#: Whose runs each user may read: one unrelated DAG, the main Knit DAG only, the DAGs of applications
#: only (what a Knit reader was granted before ats_jobs), all Knit DAGs, every DAG.
GRANTS: dict[str, frozenset[str]] = {
    "outsider": frozenset({THEIR_DAG}),
    "main_dag_reader": frozenset({"knit_ats_applications"}),
    "applications_reader": APPLICATION_DAGS,
    "knit_reader": frozenset(KNIT_DAG_IDS),
    "admin": frozenset({EVERY_DAG}),
}
PAGE = "/knit-syncs/"


class DagScopedAuthManager(SimpleAuthManager):
    """``SimpleAuthManager`` whose users may read (GET) only the DAGs that ``GRANTS`` lists for them."""

    def is_authorized_dag(
        self,
        *,
        method: Any,
        user: SimpleAuthManagerUser,
        access_entity: DagAccessEntity | None = None,
        details: DagDetails | None = None,
    ) -> bool:
        granted = GRANTS.get(user.get_name(), frozenset())
        dag_id = details.id if details else None
        # No DAG named is a question about every DAG (Airflow's guard on a path without a DAG id).
        return method == "GET" and (EVERY_DAG in granted or (dag_id is not None and dag_id in granted))


def test_the_guarded_dags_are_every_enabled_data_types_dags_and_onboarding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard names the DAGs the registry gives each enabled type (that dags/ defines exactly those,
    with maintenance, is tests/dags/test_dag_integrity.py's to show)."""
    assert KNIT_DAG_IDS == (
        "knit_ats_applications",
        "knit_ats_applications_on_delivery",
        "knit_ats_jobs",
        "knit_ats_jobs_on_delivery",
        "knit_integration_onboarding",
    )
    monkeypatch.setenv("KNIT_DATA_TYPES", "ats_applications")
    assert set(knit_dag_ids()) == APPLICATION_DAGS, "a deployment that syncs applications only"


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return {user: secrets.token_urlsafe(12) for user in GRANTS}


@pytest.fixture(scope="module")
def airflow_api(
    airflow_db: Path, landing_url: str, passwords: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Airflow's API app with ``DagScopedAuthManager``; the auth manager is reset for later modules."""
    from airflow.api_fastapi.app import create_app, purge_cached_app

    password_file = tmp_path_factory.mktemp("auth") / "passwords.json"
    password_file.write_text(json.dumps(passwords))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{__name__}.{DagScopedAuthManager.__name__}")
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{user}:viewer" for user in GRANTS))
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(password_file))
        # An issuer: Airflow 3.1.1 passes ``iss=None`` to PyJWT otherwise, which newer PyJWT refuses.
        env.setenv("AIRFLOW__API_AUTH__JWT_ISSUER", "knit-tests")
        env.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
        env.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", landing_url.replace("postgresql://", "postgres://"))
        purge_cached_app()
        try:
            yield create_app()
        finally:
            purge_cached_app()


def _get(app: Any, path: str, user: str | None = None, password: str = "") -> httpx.Response:
    """GET ``path`` as ``user``, with the token Airflow's login endpoint gives for their password."""

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://airflow") as client:
            headers = {}
            if user is not None:
                login = await client.post("/auth/token", json={"username": user, "password": password})
                assert login.status_code == 201, login.text
                headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            return await client.get(path, headers=headers)

    return asyncio.run(scenario())


#: What a query string might name: the user's own DAG (Airflow 3.1.7 and 3.1.8's guard took it), a Knit DAG, all.
#: And the data type the page is asked to show: a filter of what it shows, never of who may see it.
QUERIES = ("", f"?dag_id={THEIR_DAG}", f"?dag_id={KNIT_DAG_IDS[0]}", "?dag_id=~", "?data_type=ats_applications")


def test_a_user_who_may_read_one_unrelated_dag_gets_403_whatever_the_query_names(
    airflow_api: Any, passwords: dict[str, str]
) -> None:
    assert _get(airflow_api, PAGE).status_code == 401
    answers = {query: _get(airflow_api, PAGE + query, "outsider", passwords["outsider"]) for query in QUERIES}
    assert {query: answer.status_code for query, answer in answers.items()} == dict.fromkeys(QUERIES, 403)
    for answer in answers.values():
        assert all(dag_id in answer.json()["detail"] for dag_id in KNIT_DAG_IDS), "says which access it needs"


def test_a_user_who_may_read_the_main_dag_only_gets_403(airflow_api: Any, passwords: dict[str, str]) -> None:
    answers = {
        query: _get(airflow_api, PAGE + query, "main_dag_reader", passwords["main_dag_reader"]) for query in QUERIES
    }
    assert {query: answer.status_code for query, answer in answers.items()} == dict.fromkeys(QUERIES, 403)


def test_a_user_who_may_read_only_the_application_dags_gets_403_and_no_jobs_run(
    airflow_api: Any, passwords: dict[str, str], landing_url: str
) -> None:
    """Read access to the DAGs of ats_applications (and onboarding) shows no run of ats_jobs: the page
    needs the jobs DAGs too, and says so, even when it is asked for applications only."""
    jobs = Lander(landing_url, data_type="ats_jobs")
    try:
        job, sync_run = ids("jobs-hidden")
        jobs.records(job, sync_run, 1)
    finally:
        jobs.close()
    user = "applications_reader"
    answers = {
        query: _get(airflow_api, PAGE + query, user, passwords[user]) for query in (*QUERIES, "?data_type=ats_jobs")
    }
    assert {answer.status_code for answer in answers.values()} == {403}
    for answer in answers.values():
        assert sync_run not in answer.text
        assert "knit_ats_jobs, knit_ats_jobs_on_delivery" in answer.json()["detail"], "names the access it lacks"


def _dag_runs_triggered_by(sync_run_id: str, dag_runs: list[tuple[str, str]]) -> None:
    """An asset event naming ``sync_run_id``, as the watcher emits it, and the DAG runs it created."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    now = datetime.now(timezone.utc)
    with create_session() as session:
        asset = AssetModel(name=f"completed-{sync_run_id}", uri=f"knit://test/{sync_run_id}", group="knit")
        session.add(asset)
        session.flush()
        event = AssetEvent(asset_id=asset.id, extra={"payload": {"sync_run_id": sync_run_id}}, timestamp=now)
        for dag_id, run_id in dag_runs:
            run = DagRun(dag_id, run_id, run_type="asset_triggered", state=DagRunState.SUCCESS, run_after=now)
            event.created_dagruns.append(run)
        session.add(event)


def test_knit_readers_get_the_page_with_only_the_dag_runs_they_may_read(
    airflow_api: Any, passwords: dict[str, str], lander: Lander, landing_url: str
) -> None:
    job, sync_run = ids("access")
    lander.records(job, sync_run, 2)
    jobs = Lander(landing_url, data_type="ats_jobs")
    try:
        jobs_run = f"{sync_run}-jobs"
        jobs.records(job, jobs_run, 1)
    finally:
        jobs.close()
    knit_run, their_run = f"{sync_run}-normalized", f"{sync_run}-report"
    _dag_runs_triggered_by(sync_run, [(KNIT_DAG_IDS[1], knit_run), (THEIR_DAG, their_run)])

    reader = _get(airflow_api, PAGE + f"?dag_id={THEIR_DAG}", "knit_reader", passwords["knit_reader"])
    assert reader.status_code == 200, reader.text
    assert sync_run in reader.text
    assert f"{KNIT_DAG_IDS[1]} / {knit_run}" in reader.text
    assert their_run not in reader.text, "a DAG run of a DAG the user may not read"
    assert jobs_run in reader.text, "both types' runs"
    only_jobs = _get(airflow_api, PAGE + "?data_type=ats_jobs", "knit_reader", passwords["knit_reader"])
    assert only_jobs.status_code == 200, only_jobs.text
    assert f"<code>{jobs_run}</code>" in only_jobs.text
    assert f"<code>{sync_run}</code>" not in only_jobs.text, "an applications run, filtered out"

    admin = _get(airflow_api, PAGE, "admin", passwords["admin"])
    assert admin.status_code == 200, admin.text
    assert f"{KNIT_DAG_IDS[1]} / {knit_run}" in admin.text
    assert f"{THEIR_DAG} / {their_run}" in admin.text
