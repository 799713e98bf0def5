"""Wait, in the triggerer, for a run of one integration and data type to begin landing: Knit's own run.

Knit starts an integration's initial sync by itself once the integration connects (its Syncs guide), so
onboarding waits for that run before calling ``sync.start`` (StartSyncOperator's ``adopt_since`` and
``adopt_grace``). The run counts once its first event has landed at or after ``since`` (the landing
database's clock). Record events send no NOTIFY, so the trigger is woken by the run's first
``sync.events.*`` notification (any run's: the notification names no integration) or by the backup
poll, whichever comes first, on the shared listening connection (``triggers/listener.py``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from knit_provider.exceptions import KnitInputError
from knit_provider.hooks.landing import KnitLandingHook
from knit_provider.inputs import parse_time
from knit_provider.landing.starts import BegunRun, afind_begun
from knit_provider.redaction import Redactor
from knit_provider.settings import DEFAULT_LANDING_CONN_ID, EVENT_ALL_CONSUMED, EVENT_PROCESSED, Schemas
from knit_provider.triggers.listener import Waiter, is_transient

__all__ = ["RunBeganTrigger"]


class RunBeganTrigger(BaseTrigger):
    """Yield one event: the first run of the integration that began since ``since``, or none within ``grace``.

    The payload is ``{"status": "began"|"none"|"error", "message", "waited_seconds", "sync_run_id",
    "sync_job_id", "sync_type", "first_received_at"}`` (the run's fields None unless ``began``).

    :param integration_id: the integration whose run is awaited.
    :param data_type: Knit's ``dataType`` of the run.
    :param since: ISO-8601 time on the landing database's clock; a run whose first event landed earlier
        never counts.
    :param sync_type: ``initial_sync`` or ``delta_sync`` to accept only that kind of run; None accepts any.
    :param grace: seconds to wait for the run to begin.
    :param landing_conn_id: Airflow connection of the landing database.
    :param poll_interval: seconds between backup checks.
    :param deadline: the absolute end of the wait (ISO-8601), set from ``grace`` on first construction and
        serialized, so a trigger rebuilt after a triggerer restart keeps it.
    """

    def __init__(
        self,
        *,
        integration_id: str,
        data_type: str,
        since: str | datetime,
        grace: float,
        sync_type: str | None = None,
        landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
        poll_interval: float = 15.0,
        deadline: str | None = None,
    ) -> None:
        super().__init__()
        if grace < 0:
            raise KnitInputError(f"grace must be a non-negative number of seconds, got {grace!r}")
        if poll_interval <= 0:
            raise KnitInputError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        started = parse_time(since, "since")
        if started is None:
            raise KnitInputError("since is required: the time from which a run of the integration counts.")
        self.integration_id = integration_id
        self.data_type = data_type
        self.since = started
        self.grace = float(grace)
        self.sync_type = sync_type
        self.landing_conn_id = landing_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = parse_time(deadline, "deadline") or datetime.now(timezone.utc) + timedelta(seconds=self.grace)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "integration_id": self.integration_id,
                "data_type": self.data_type,
                "since": self.since.isoformat(),
                "grace": self.grace,
                "sync_type": self.sync_type,
                "landing_conn_id": self.landing_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline.isoformat(),
            },
        )

    async def run(self) -> AsyncGenerator[TriggerEvent, None]:
        try:
            dsn = await KnitLandingHook(self.landing_conn_id).adsn()
        except Exception as exc:  # a missing or malformed connection: nothing to retry against
            yield TriggerEvent(
                self._payload("error", f"Cannot use connection {self.landing_conn_id!r}: {type(exc).__name__}: {exc}")
            )
            return
        async with Waiter(
            dsn, event_types=(EVENT_PROCESSED, EVENT_ALL_CONSUMED), poll_interval=self.poll_interval
        ) as w:
            payload = await self._wait(w, Redactor.for_dsn(dsn))
        yield TriggerEvent(payload)

    async def _wait(self, waiter: Waiter, redact: Redactor) -> dict[str, Any]:
        schemas = Schemas.from_env()
        what = f"a {self.data_type} run of integration {self.integration_id} since {self.since.isoformat()}"
        while True:
            waiter.arm()
            try:
                run = await waiter.run(
                    afind_begun, schemas, self.integration_id, self.data_type, self.since, self.sync_type
                )
            except Exception as exc:
                detail = redact(f"{type(exc).__name__}: {exc}")
                if not is_transient(exc):
                    return self._payload("error", f"Looking for {what} in the landing database failed: {detail}")
                self.log.warning("Landing database unreachable while waiting for %s (%s)", what, detail)
                run = None
            if run is not None:
                return self._payload("began", f"Knit started it: run {run.sync_run_id}", run)
            remaining = (self.deadline - datetime.now(timezone.utc)).total_seconds()
            if remaining <= 0:
                return self._payload("none", f"No run began within {self.grace:g} s: {what}")
            await waiter.wait(remaining)  # a run event's notification, the backup poll, a reconnect, or the deadline

    def _payload(self, status: str, message: str, run: BegunRun | None = None) -> dict[str, Any]:
        waited = self.grace - max(0.0, (self.deadline - datetime.now(timezone.utc)).total_seconds())
        return {
            "status": status,
            "message": message,
            "waited_seconds": round(max(0.0, waited), 3),
            "sync_run_id": run.sync_run_id if run else None,
            "sync_job_id": run.sync_job_id if run else None,
            "sync_type": run.sync_type if run else None,
            "first_received_at": run.first_received_at.isoformat() if run else None,
        }
