"""ActivationsTrigger against a real Postgres: each activation announced once, woken by NOTIFY, across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import psycopg2
from knit_landing_helpers import wait_for

from knit_provider.triggers.activations import ActivationsTrigger


class Collector:
    """Drive the trigger in the background, as the triggerer does, and keep every payload it yields."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._collect(ActivationsTrigger(poll_interval=60)))

    async def _collect(self, trigger: ActivationsTrigger) -> None:
        async for event in trigger.run():
            self.events.append(event.payload)

    async def until(self, count: int) -> None:
        async def enough() -> bool:
            if self._task.done():
                self._task.result()  # surface a crash instead of timing out
            return len(self.events) >= count

        await wait_for(enough, f"{count} announcements (have {self.events})")

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def activate(url: str, integration: str, event_id: str, at_ms: int, errors: Any = None) -> None:
    data: dict[str, Any] = {"integrationId": integration, "activatedAt": str(at_ms)}
    if errors is not None:
        data["errors"] = errors
    body = {"eventId": event_id, "eventType": "app.integration.activate", "eventData": data}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT knit_landing.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[])",
            (
                [event_id],
                [body["eventType"]],
                [None],
                [None],
                [None],
                [None],
                [None],
                [integration],
                [json.dumps(body)],
            ),
        )


def test_each_activation_is_announced_once_woken_by_notify(landing_conn: str) -> None:
    errors = [{"code": "MISSING_SCOPE", "msg": "applications:read"}]
    activate(landing_conn, "int-early", "ev-early", 1_000, errors)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        watcher = Collector()
        await watcher.until(1)  # caught up with the activation that landed while it was not running
        activate(landing_conn, "int-late", "ev-late", 2_000)  # NOTIFY wakes it: the poll is a minute away
        await watcher.until(2)
        await watcher.stop()
        restarted = Collector()
        activate(landing_conn, "int-early", "ev-older", 500)  # older than the one stored: never announced
        activate(landing_conn, "int-late", "ev-newer", 3_000)  # newer: announced again
        await restarted.until(1)
        await restarted.stop()
        return watcher.events, restarted.events

    first, after_restart = asyncio.run(scenario())
    assert [(e["integration_id"], e["activation_event_id"], e["state"]) for e in first] == [
        ("int-early", "ev-early", "failed_validation"),
        ("int-late", "ev-late", "active"),
    ]
    assert first[0]["validation_errors"] == errors, "Knit's errors as it sent them"
    assert first[1]["validation_errors"] is None
    assert first[1]["activated_at"].startswith("1970-01-01T00:00:02")
    assert [(e["integration_id"], e["activation_event_id"]) for e in after_restart] == [("int-late", "ev-newer")]
