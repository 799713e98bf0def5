"""Who may open the Knit syncs page, and which DAG runs it shows them: Airflow's own API app, a real login.

The page is requested from Airflow's API app as the API server builds it (the plugin mounted at
``/knit-syncs``), with a bearer token from Airflow's login endpoint. The auth manager is Airflow's
``SimpleAuthManager`` with per-DAG grants (``DagScopedAuthManager``): each user may read the DAGs
listed for them in ``GRANTS`` and nothing else. Here, not under ``tests/ui``, so that
``make test-compat`` runs it on the oldest supported Airflow too.
"""

from __future__ import annotations

import asyncio
import json
import re
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

from knit_provider.ui.app import KNIT_DAG_IDS

#: Every DAG, for the user who may read all of them.
EVERY_DAG = "*"
THEIR_DAG = "their_team_reports"
#: Whose runs each user may read: one unrelated DAG, the main Knit DAG only, all Knit DAGs, every DAG.
GRANTS: dict[str, frozenset[str]] = {
    "outsider": frozenset({THEIR_DAG}),
    "main_dag_reader": frozenset({KNIT_DAG_IDS[0]}),
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


def test_the_guarded_dags_are_the_knit_dags() -> None:
    dags = Path(__file__).resolve().parents[1] / "dags"
    declared = {dag_id for path in dags.glob("*.py") for dag_id in re.findall(r'dag_id="([^"]+)"', path.read_text())}
    assert set(KNIT_DAG_IDS) == declared - {"knit_landing_maintenance"}, "every DAG that handles syncs, no other"


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
QUERIES = ("", f"?dag_id={THEIR_DAG}", f"?dag_id={KNIT_DAG_IDS[0]}", "?dag_id=~")


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
    airflow_api: Any, passwords: dict[str, str], lander: Lander
) -> None:
    job, sync_run = ids("access")
    lander.records(job, sync_run, 2)
    knit_run, their_run = f"{sync_run}-normalized", f"{sync_run}-report"
    _dag_runs_triggered_by(sync_run, [(KNIT_DAG_IDS[1], knit_run), (THEIR_DAG, their_run)])

    reader = _get(airflow_api, PAGE + f"?dag_id={THEIR_DAG}", "knit_reader", passwords["knit_reader"])
    assert reader.status_code == 200, reader.text
    assert sync_run in reader.text
    assert f"{KNIT_DAG_IDS[1]} / {knit_run}" in reader.text
    assert their_run not in reader.text, "a DAG run of a DAG the user may not read"

    admin = _get(airflow_api, PAGE, "admin", passwords["admin"])
    assert admin.status_code == 200, admin.text
    assert f"{KNIT_DAG_IDS[1]} / {knit_run}" in admin.text
    assert f"{THEIR_DAG} / {their_run}" in admin.text
