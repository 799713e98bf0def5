"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from knit_provider import __version__


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: its package, the ``knit`` connection type and its extra link."""
    return {
        "package-name": "knit-airflow",
        "name": "Knit",
        "description": "Start Knit syncs, land Knit's webhook events in Postgres and normalize them.",
        "versions": [__version__],
        "connection-types": [
            {"connection-type": "knit", "hook-class-name": "knit_provider.hooks.knit.KnitHook"},
        ],
        "extra-links": ["knit_provider.operators.start_sync.KnitDashboardLink"],
    }
