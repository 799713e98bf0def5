"""What the Airflow connection form shows for a ``knit`` connection, declared once.

Airflow 3.2+ reads connection-form metadata declaratively from the provider info
(``conn-fields`` and ``ui-field-behaviour``) without importing the hook; the hook's
``get_ui_field_behaviour`` returns the same data for callers that still ask the hook. This module
imports nothing from Airflow so the provider info stays cheap to load.
"""

from __future__ import annotations

from typing import Any

from knit_provider.settings import DEFAULT_KNIT_HOST

HIDDEN_FIELDS = ["login", "schema", "port"]
RELABELING = {"host": "Knit API URL", "password": "API key"}
PLACEHOLDERS = {
    "host": DEFAULT_KNIT_HOST,
    "password": "Knit API key (sent as a Bearer token)",
    "integration_id": "Integration id from Knit's UI component",
    "webhook_secret": "Leave empty: Knit signs webhooks with the API key",
}

# Extra fields, stored in the connection's extra under these plain keys.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "integration_id": {
        "label": "Integration ID",
        "description": "Default X-Knit-Integration-Id; a task's integration_id overrides it.",
        "schema": {"type": ["string", "null"]},
    },
    "webhook_secret": {
        "label": "Webhook signing secret",
        "description": "Key Knit signs webhook bodies with. Empty means the API key, which is Knit's default.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "Longest wait for one Knit API answer. Default 30.",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "max_attempts": {
        "label": "Attempts per call",
        "description": "Attempts for a call failing with a network error, 429 or 5xx. Default 5.",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "max_retry_seconds": {
        "label": "Retry budget (seconds)",
        "description": "Total time a call may take, retries and waits included. Default 300.",
        "schema": {"type": ["number", "null"], "minimum": 1},
    },
    "dashboard_url": {
        "label": "Dashboard URL",
        "description": "Where the start_sync task's 'Knit dashboard' link points. May name {sync_job_id}, "
        "{sync_run_id} or {integration_id} to open the sync job's own page; default Knit's dashboard.",
        "schema": {"type": ["string", "null"]},
    },
}


def ui_field_behaviour() -> dict[str, Any]:
    """Return the form behaviour in the hook-method shape (snake_case keys)."""
    return {
        "hidden_fields": list(HIDDEN_FIELDS),
        "relabeling": dict(RELABELING),
        "placeholders": dict(PLACEHOLDERS),
    }


def provider_connection_type(hook_class_name: str, conn_type: str, hook_name: str) -> dict[str, Any]:
    """Return the ``connection-types`` entry of the provider info, UI metadata included."""
    return {
        "connection-type": conn_type,
        "hook-class-name": hook_class_name,
        "hook-name": hook_name,
        "ui-field-behaviour": {
            "hidden-fields": list(HIDDEN_FIELDS),
            "relabeling": dict(RELABELING),
            "placeholders": dict(PLACEHOLDERS),
        },
        "conn-fields": {name: dict(field) for name, field in CONN_FIELDS.items()},
    }
