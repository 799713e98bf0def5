"""Announce every activation of an integration to an ``AssetWatcher``, once, so a DAG onboards it at once.

Knit sends ``app.integration.activate`` when one of its users' customers has connected an ATS and
Knit has validated the connection. ``land_events`` records the newest activation of each integration
in the registry (``knit_landing.integrations``) and NOTIFYs it on the same channel as run events;
this trigger wakes on that notification (or its backup poll) and turns each activation not yet
announced into one trigger event, and thus one asset event.

Once, durably, as for completed runs: ``integrations.announced_seq`` is set in the statement that
selects the activation (``sql/landing/claim_activations.sql``), so a restarted triggerer, or two
running the same watcher, never announce one twice, and activations that landed while no triggerer
was up are announced when one starts. A newer activation of the same integration is announced again
(its DAG run decides whether anything is left to do); an older one landing late never is.

Lost announcements are not re-sent: a triggerer killed between the claim and the hand-over loses one.
The integration is still in the registry as active, so the main DAG's "all active" run syncs it (an
initial sync, as it has no completed run yet).

Reading the payload in the watcher's DAG: ``triggering_asset_events[asset][n].extra["payload"]`` is the
dict built by :func:`announcement`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from knit_provider.exceptions import KnitInputError
from knit_provider.landing.integrations import aclaim_activations
from knit_provider.settings import DEFAULT_LANDING_CONN_ID, EVENT_ACTIVATE
from knit_provider.triggers.listener import watch_claims

__all__ = ["ActivationsTrigger", "announcement"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def announcement(row: dict[str, Any]) -> dict[str, Any]:
    """The event payload of one claimed activation, as plain JSON values."""
    return {
        "integration_id": row["integration_id"],
        "state": row["state"],
        "activation_event_id": row["activation_event_id"],
        "activated_at": _iso(row["activated_at"]),
        # asyncpg hands jsonb over as its JSON text; the payload carries the value as Knit sent it.
        "validation_errors": None if row["validation_errors"] is None else orjson.loads(row["validation_errors"]),
        "announced_at": _iso(row["announced_at"]),
    }


class ActivationsTrigger(BaseEventTrigger):
    """Fire one event per integration activation not yet announced; runs for ever.

    :param landing_conn_id: Airflow connection of the landing database.
    :param poll_interval: seconds between backup checks; a landed activation wakes it at once via NOTIFY.
    """

    def __init__(self, *, landing_conn_id: str = DEFAULT_LANDING_CONN_ID, poll_interval: float = 60.0) -> None:
        super().__init__()
        if poll_interval <= 0:
            raise KnitInputError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        self.landing_conn_id = landing_conn_id
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"landing_conn_id": self.landing_conn_id, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        batches = watch_claims(
            self.landing_conn_id,
            (EVENT_ACTIVATE,),
            self.poll_interval,
            aclaim_activations,
            what="integration activations",
            log=self.log,
        )
        async for claimed in batches:
            for row in claimed:
                self.log.info(
                    "Integration %s activated (%s, event %s): announcing it",
                    row["integration_id"],
                    row["state"],
                    row["activation_event_id"],
                )
                yield TriggerEvent(announcement(row))
