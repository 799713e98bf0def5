"""Airflow plugin: mounts the webhook receiver into Airflow's API server at ``/knit``.

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


@cache
def _fastapi_apps() -> list[dict[str, Any]]:
    from knit_provider.webhook.app import create_app
    from knit_provider.webhook.settings import resolve_settings

    return [{"app": create_app(resolve_settings), "url_prefix": URL_PREFIX, "name": "Knit webhook receiver"}]


def registered_by_entry_point() -> bool:
    """Return whether the installed package registers this plugin through its entry point."""
    return any(ep.value.startswith("knit_provider.plugin:") for ep in entry_points(group="airflow.plugins"))


class KnitPlugin(AirflowPlugin):
    """The Knit webhook receiver at ``/knit/webhook`` (and ``/knit/health``) of the API server."""

    name = "knit"

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return _fastapi_apps()
