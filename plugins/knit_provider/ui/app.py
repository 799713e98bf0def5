"""The Knit syncs page as a FastAPI app that Airflow's API server mounts, behind Airflow's own auth.

Every request goes through Airflow's auth manager: the caller needs a valid Airflow session (the
UI's cookie or a bearer token) and read access to the DAG runs of every Knit DAG (:func:`knit_dag_ids`:
each enabled data type's two DAGs and onboarding), whose syncs the page reports on. Anonymous
requests get 401, others without that access 403. Of the other DAGs' runs that handled a sync, the
page lists only those the caller may read. ``?data_type=`` narrows what the page shows, never whom
it lets in.

The page asks the auth manager itself, naming those DAGs, rather than through Airflow's
``requires_access_dag``: that guard takes the DAG id from the request when it is not given one
(Airflow 3.1.7 and 3.1.8 read ``?dag_id=`` too), so a caller could name a DAG of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Annotated
from urllib.parse import urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.models.dag import DagModel
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import HTMLResponse

from knit_provider import data_types
from knit_provider.settings import DEFAULT_LANDING_CONN_ID, Schemas
from knit_provider.ui import page
from knit_provider.ui.syncs import (
    add_dead_letters,
    add_normalized,
    add_progress,
    dag_runs_by_sync_run,
    recent_runs,
    registry,
)

log = logging.getLogger(__name__)

#: The DAG that syncs each integration Knit activates, whatever the data types.
ONBOARDING_DAG_ID = "knit_integration_onboarding"
#: A slow landing database must not hold an API server thread for long.
_STATEMENT_TIMEOUT_MS = 10_000
_CONNECT_TIMEOUT_S = 5
_DAG_RUN_MARGIN = timedelta(days=1)
#: Longer than any name Knit gives a data type; a longer filter is refused (422), not looked up.
_DATA_TYPE_MAX_LENGTH = 100


def _ui_root() -> str:
    """The path Airflow's UI is served under (``[api] base_url``), without a trailing slash."""
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def _error_page(status: int, message: str) -> HTMLResponse:
    from html import escape

    return HTMLResponse(
        f"<!doctype html><title>Knit syncs</title><h1>Knit syncs</h1><p>{escape(message)}</p>", status_code=status
    )


def readable_run_dag_ids(user: BaseUser, dag_ids: Iterable[str]) -> set[str]:
    """Those of ``dag_ids`` whose runs ``user`` may read, as the auth manager answers (one question per DAG).

    Each DAG is named with its team, as Airflow's own guards do, so a multi-team auth manager
    answers for the right team.
    """
    auth_manager = get_auth_manager()
    return {
        dag_id
        for dag_id in set(dag_ids)
        if auth_manager.is_authorized_dag(
            method="GET",
            access_entity=DagAccessEntity.RUN,
            details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)),
            user=user,
        )
    }


def knit_dag_ids() -> tuple[str, ...]:
    """The DAGs whose syncs the page reports on: each enabled data type's scheduled and on-delivery DAG,
    then onboarding. Read from the registry per request, so the guard follows ``$KNIT_DATA_TYPES`` as the
    DAGs do; reading the page takes read access to the runs of all of them."""
    per_type = [dag_id for spec in data_types.enabled() for dag_id in (spec.dag_id, spec.on_delivery_dag_id)]
    return (*per_type, ONBOARDING_DAG_ID)


def knit_runs_reader(user: GetUserDep) -> BaseUser:
    """The logged-in user, if they may read the runs of every Knit DAG; else 403 (the page shows all their syncs).

    The user comes from Airflow's own dependency (the UI's cookie or a bearer token: 401 without
    one, 403 for an invalid one); nothing else of the request decides what is authorized.
    """
    dag_ids = knit_dag_ids()
    if readable_run_dag_ids(user, dag_ids) != set(dag_ids):
        needed = ", ".join(dag_ids)
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"The Knit syncs page needs read access to the DAG runs of {needed}."
        )
    return user


KnitRunsReaderDep = Annotated[BaseUser, Depends(knit_runs_reader)]


def syncs_page(
    user: KnitRunsReaderDep,
    data_type: Annotated[str | None, Query(max_length=_DATA_TYPE_MAX_LENGTH)] = None,
) -> HTMLResponse:
    """Read the landing store and Airflow's metadata and render the page for ``user`` (an authorized reader),
    every data type's runs, or only ``data_type``'s (an empty value shows all)."""
    import psycopg2
    from airflow.exceptions import AirflowNotFoundException
    from airflow.utils.session import create_session

    from knit_provider.hooks.landing import KnitLandingHook

    schemas = Schemas.from_env()
    landing_conn_id = DEFAULT_LANDING_CONN_ID
    hook = KnitLandingHook(
        landing_conn_id,
        application_name="knit-syncs-page",
        connect_timeout=_CONNECT_TIMEOUT_S,
        options=f"-c statement_timeout={_STATEMENT_TIMEOUT_MS} -c timezone=UTC",
    )
    try:
        conn = hook.get_conn()
    except AirflowNotFoundException:
        return _error_page(
            503,
            f"The Airflow connection {landing_conn_id!r} (the landing database) is not "
            "defined, so there is nothing to show yet.",
        )
    except psycopg2.Error as exc:
        log.warning("Knit syncs page: cannot reach the landing database: %s", exc)
        return _error_page(
            503, f"The landing database (connection {landing_conn_id!r}) cannot be reached: {str(exc).strip()}"
        )
    try:
        conn.set_session(readonly=True, autocommit=True)
        runs = recent_runs(conn, schemas, data_type=data_type or None)
        dead_letters_readable = add_dead_letters(conn, schemas, runs)
        add_progress(conn, schemas, runs)
        add_normalized(conn, schemas, runs)
        integrations = registry(conn, schemas)
    finally:
        conn.close()
    # A DAG run that started a sync is due (run_after) shortly before its first event lands, and one
    # that normalized it is due after; a day's margin covers a start that queued. (A backfill of an
    # older interval is due long before and is not looked for.)
    since = min((run.first_received_at for run in runs), default=None)
    with create_session() as session:
        links = dag_runs_by_sync_run(
            session, [run.sync_run_id for run in runs], since=since - _DAG_RUN_MARGIN if since else None
        )
    # Other DAGs' runs (a DAG of the user's scheduled on the same asset, or using Knit's operators)
    # are listed only to those who may read them.
    readable = readable_run_dag_ids(user, {link.dag_id for found in links.values() for link in found})
    for run in runs:
        run.dag_runs.extend(link for link in links.get(run.sync_run_id, []) if link.dag_id in readable)
    html = page.render(
        runs,
        now=datetime.now(timezone.utc),
        ui_root=_ui_root(),
        landing_schema=schemas.landing,
        dead_letters_readable=dead_letters_readable,
        integrations=integrations,
        data_types=data_types.enabled(),
        data_type=data_type or None,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def create_app() -> FastAPI:
    """The app mounted at ``/knit-syncs``: ``GET /`` is the page; every route needs a Knit runs reader."""
    app = FastAPI(
        title="Knit syncs",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(knit_runs_reader)],
    )
    app.get("/", response_class=HTMLResponse, summary="Recent Knit sync runs per integration")(syncs_page)
    return app
