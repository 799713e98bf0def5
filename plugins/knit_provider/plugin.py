"""Airflow plugin: mounts the webhook receiver into Airflow's API server at ``/knit``, and the
Knit syncs page (``knit_provider.ui``, behind Airflow's login) at ``/knit-syncs``, under *Browse*.

Knit then posts to ``https://<api-server>/knit/webhook`` and no extra process is needed. The app
is built on first access of ``fastapi_apps`` (only the API server and ``airflow plugins`` ask)
and reads its connections on its first request, so loading the plugin elsewhere (scheduler,
workers) costs nothing.

The plugin is registered by the ``airflow.plugins`` entry point when the package is installed.
When it is only copied into the plugins folder, ``plugins/knit_plugin.py`` exposes it instead;
``plugins/.airflowignore`` keeps Airflow from importing this package's modules as plugin files.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/knit"
#: The Knit syncs page (``knit_provider.ui``); a prefix of its own, since the receiver's app under
#: ``/knit`` answers every path below it and takes no Airflow authentication (Knit signs instead).
SYNCS_URL_PREFIX = "/knit-syncs"


@cache
def _fastapi_apps() -> list[dict[str, Any]]:
    from knit_provider.ui.app import create_app as create_syncs_app
    from knit_provider.webhook.app import create_app
    from knit_provider.webhook.settings import resolve_mounted_settings

    return [
        {"app": create_app(resolve_mounted_settings), "url_prefix": URL_PREFIX, "name": "Knit webhook receiver"},
        {"app": create_syncs_app(), "url_prefix": SYNCS_URL_PREFIX, "name": "Knit syncs page"},
    ]


def registered_by_entry_point() -> bool:
    """Return whether the installed package registers this plugin through its entry point."""
    return any(ep.value.startswith("knit_provider.plugin:") for ep in entry_points(group="airflow.plugins"))


class KnitPlugin(AirflowPlugin):
    """The Knit webhook receiver at ``/knit/webhook`` (and ``/knit/health``), and the Knit syncs page."""

    name = "knit"
    # Shown in Airflow's navigation (Browse), inside the UI's frame at /plugin/knit-syncs.
    external_views = [
        {
            "name": "Knit syncs",
            "href": SYNCS_URL_PREFIX + "/",
            "url_route": "knit-syncs",
            "destination": "nav",
            "category": "browse",
        }
    ]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return _fastapi_apps()
