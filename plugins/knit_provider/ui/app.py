"""The Knit syncs page as a FastAPI app that Airflow's API server mounts, behind Airflow's own auth.

Every request goes through Airflow's auth manager: the caller needs a valid Airflow session (the
UI's cookie or a bearer token) and read access to the DAG runs of ``knit_ats_applications``, the
DAG whose runs the page reports on. Anonymous requests get 401, others without that access 403.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from knit_provider.settings import DEFAULT_LANDING_CONN_ID, Schemas
from knit_provider.ui import page
from knit_provider.ui.syncs import add_dead_letters, add_progress, dag_runs_by_sync_run, recent_runs, registry

log = logging.getLogger(__name__)

#: The DAG whose run permissions guard the page.
GUARDING_DAG_ID = "knit_ats_applications"
#: A slow landing database must not hold an API server thread for long.
_STATEMENT_TIMEOUT_MS = 10_000
_CONNECT_TIMEOUT_S = 5
_DAG_RUN_MARGIN = timedelta(days=1)


def _ui_root() -> str:
    """The path Airflow's UI is served under (``[api] base_url``), without a trailing slash."""
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def _error_page(status: int, message: str) -> HTMLResponse:
    from html import escape

    return HTMLResponse(
        f"<!doctype html><title>Knit syncs</title><h1>Knit syncs</h1><p>{escape(message)}</p>", status_code=status
    )


def syncs_page() -> HTMLResponse:
    """Read the landing store and Airflow's metadata and render the page (a sync route: FastAPI runs it in a thread)."""
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
        runs = recent_runs(conn, schemas)
        dead_letters_readable = add_dead_letters(conn, schemas, runs)
        add_progress(conn, schemas, runs)
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
    for run in runs:
        run.dag_runs.extend(links.get(run.sync_run_id, []))
    html = page.render(
        runs,
        now=datetime.now(timezone.utc),
        ui_root=_ui_root(),
        landing_schema=schemas.landing,
        dead_letters_readable=dead_letters_readable,
        integrations=integrations,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def create_app() -> FastAPI:
    """The app mounted at ``/knit-syncs``: ``GET /`` is the page; every route needs Airflow auth."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    from knit_provider.version_compat import AIRFLOW_V_3_2_PLUS

    # Airflow 3.1's guard takes the DAG id only from the request path, which this page has not: there
    # it asks for read access to the runs of every DAG, stricter than the one DAG it asks for later.
    dag = {"param_dag_id": GUARDING_DAG_ID} if AIRFLOW_V_3_2_PLUS else {}
    guard = Depends(requires_access_dag("GET", DagAccessEntity.RUN, **dag))
    app = FastAPI(title="Knit syncs", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[guard])
    app.get("/", response_class=HTMLResponse, summary="Recent Knit sync runs per integration")(syncs_page)
    return app
