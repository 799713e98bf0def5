"""The "Knit dashboard" button on a StartSyncOperator task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

# Knit's web app; a connection can point elsewhere with the extra ``dashboard_url``.
DEFAULT_DASHBOARD_URL = "https://app.getknit.dev"


class KnitDashboardLink(BaseOperatorLink):
    """Open Knit's dashboard, where the sync job's runs and deliveries can be inspected.

    Airflow 3 calls ``get_link`` on the worker when the task finishes and stores the URL as an
    XCom, so the link reads what ``execute`` found out (the connection's ``dashboard_url``) from
    the operator instead of looking anything up in the API server.
    """

    name = "Knit dashboard"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return getattr(operator, "knit_dashboard_url", None) or DEFAULT_DASHBOARD_URL
