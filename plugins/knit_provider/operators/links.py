"""The Knit button on a StartSyncOperator task: the sync job's page when its URL is known, else the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

# Knit's web app; a connection can point elsewhere with the extra ``dashboard_url``.
DEFAULT_DASHBOARD_URL = "https://app.getknit.dev"
#: What a ``dashboard_url`` template may name; each is filled from the sync the task started.
LINK_FIELDS = ("sync_job_id", "sync_run_id", "integration_id")


def knit_link_url(template: str | None, sync: Mapping[str, Any] | None = None) -> str:
    """The link for a started sync: ``template`` filled with its ids, else the dashboard it belongs to.

    Knit documents no URL for a sync job's page, so by default the link opens the dashboard. A
    connection whose ``dashboard_url`` extra names fields, such as
    ``https://app.example/syncs/{sync_job_id}``, gets the sync job's own page; when a field is
    unknown or the sync did not report it (before the start, or a run id Knit did not return),
    the link falls back to the template's site, ``scheme://host/``.
    """
    url = template or DEFAULT_DASHBOARD_URL
    fields = {name for _, name, _, _ in Formatter().parse(url) if name is not None}
    if not fields:
        return url
    values = dict(sync or {})
    if fields <= set(LINK_FIELDS) and all(values.get(name) for name in fields):
        return url.format(**{name: quote(str(values[name]), safe="") for name in fields})
    site = urlsplit(url)
    return f"{site.scheme}://{site.netloc}/" if site.scheme and site.netloc else DEFAULT_DASHBOARD_URL


class KnitDashboardLink(BaseOperatorLink):
    """Open Knit on the sync job the task started (see :func:`knit_link_url`), or on its dashboard.

    Airflow 3 calls ``get_link`` on the worker when the task finishes and stores the URL as an
    XCom, so the link reads what ``execute`` found out (the URL for this sync) from the operator
    instead of looking anything up in the API server.
    """

    name = "Knit dashboard"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return getattr(operator, "knit_dashboard_url", None) or DEFAULT_DASHBOARD_URL
