"""The plugin: the receiver mounted into Airflow's own API app at /knit, configured by connections."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import orjson
import pytest
from receiver_helpers import SECRET, event, scalar, signed


@pytest.fixture
def airflow_api(airflow_db: Path, landing_url: str, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", landing_url.replace("postgresql://", "postgres://"))
    monkeypatch.setenv("AIRFLOW_CONN_KNIT_DEFAULT", json.dumps({"conn_type": "knit", "password": SECRET.decode()}))
    for name in ("KNIT_WEBHOOK_SECRET", "KNIT_WEBHOOK_DATABASE_URL", "KNIT_WEBHOOK_UNSIGNED"):
        monkeypatch.delenv(name, raising=False)
    from airflow.api_fastapi.app import create_app

    return create_app()


def test_plugin_is_registered_once_with_the_mounted_app(airflow_db: Path) -> None:
    from airflow_internals import loaded_plugins

    plugins, errors = loaded_plugins()
    knit = [plugin for plugin in plugins if plugin.name == "knit"]
    assert len(knit) == 1
    # Installed: the entry point registers it, and the plugins folder adds no second copy (its shim
    # stands down) nor imports the package's modules one by one (.airflowignore). A source tree
    # with a stale *.egg-info on sys.path lists the entry point twice; that is not the folder's doing.
    assert "EntryPoint" in str(knit[0].source)
    assert not [source for source in errors if "EntryPoint" not in source and "knit" in source]
    assert [app["url_prefix"] for app in knit[0].fastapi_apps] == ["/knit", "/knit-syncs"]
    (view,) = knit[0].external_views
    assert (view["href"], view["url_route"]) == ("/knit-syncs/", "knit-syncs")


def test_mounted_receiver_lands_events(airflow_api: object, landing_url: str) -> None:
    document = event()
    body = orjson.dumps(document)

    async def scenario() -> tuple[int, int, int, int]:
        transport = httpx.ASGITransport(app=airflow_api)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://airflow") as client:
            ok = await client.post("/knit/webhook", content=body, headers=signed(body))
            unsigned = await client.post("/knit/webhook", content=body)
            health = await client.get("/knit/health")
            wrong_method = await client.get("/knit/webhook")
            mounted = airflow_api.routes  # type: ignore[attr-defined]
            knit_app = next(route.app for route in mounted if getattr(route, "path", "") == "/knit")
            await knit_app.state.receiver.close()
            return ok.status_code, unsigned.status_code, health.status_code, wrong_method.status_code

    assert asyncio.run(scenario()) == (200, 401, 200, 405)
    assert (
        scalar(landing_url, "SELECT count(*) FROM knit_landing.events WHERE event_id = %s", (document["eventId"],)) == 1
    )
