"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Airflow loads this for every process that lists providers (the API server's connection form, the
scheduler), so it imports nothing heavier than the connection-form declarations.
"""

from __future__ import annotations

from typing import Any

from knit_provider import __version__
from knit_provider.hooks.connection_form import provider_connection_type
from knit_provider.settings import KNIT_CONN_TYPE

INTEGRATION = "Knit"


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: its modules, the ``knit`` connection type with its form, its extra link."""
    return {
        "package-name": "knit-airflow",
        "name": "Knit",
        "description": "Start Knit syncs, land Knit's webhook events in Postgres and normalize them.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://developers.getknit.dev/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["knit_provider.hooks.knit", "knit_provider.hooks.landing"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["knit_provider.operators.start_sync", "knit_provider.operators.normalize"],
            }
        ],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["knit_provider.sensors.all_consumed"]}],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "knit_provider.triggers.activations",
                    "knit_provider.triggers.all_consumed",
                    "knit_provider.triggers.completed_runs",
                ],
            }
        ],
        "connection-types": [
            provider_connection_type("knit_provider.hooks.knit.KnitHook", KNIT_CONN_TYPE, "Knit"),
        ],
        "extra-links": ["knit_provider.operators.links.KnitDashboardLink"],
    }
