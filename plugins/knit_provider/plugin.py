"""Airflow plugin: mounts the webhook receiver into the API server (filled in by the receiver work)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class KnitPlugin(AirflowPlugin):
    name = "knit"
