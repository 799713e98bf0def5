"""The receiver's ASGI app for bench_servers, built by :func:`create` from ``KNIT_WEBHOOK_*`` variables.

``uvicorn --factory bench.asgi_receiver:create`` and ``granian --interface asgi --factory ...``
serve exactly what Airflow's API server mounts (:func:`knit_provider.webhook.app.create_app`),
with the settings the standalone receiver would read from the same variables.
"""

from __future__ import annotations

from fastapi import FastAPI

from knit_provider.webhook.app import create_app
from knit_provider.webhook.settings import resolve_settings


def create() -> FastAPI:
    return create_app(resolve_settings())
