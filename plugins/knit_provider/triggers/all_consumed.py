"""Wait, in the triggerer, for the ``sync.events.allConsumed`` of one sync run: woken by NOTIFY, not by polling.

The receiver sends ``NOTIFY`` in the same transaction that lands a run event, so the trigger learns of
the commit within milliseconds. NOTIFY is not durable (a dropped connection loses it), so the trigger
also re-checks after every reconnect and on a slow backup poll; the database row is the truth, the
notification only says "look now". All Knit triggers of a triggerer share one connection
(``triggers/listener.py``), so 500 waiting triggers cost one connection, not 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from knit_provider.exceptions import KnitInputError
from knit_provider.hooks.landing import KnitLandingHook
from knit_provider.inputs import parse_time
from knit_provider.landing.runs import (
    RunSelector,
    RunState,
    completion,
    mismatch,
    timeout_report,
)
from knit_provider.landing.starts import run_goes_on
from knit_provider.redaction import Redactor
from knit_provider.settings import DEFAULT_LANDING_CONN_ID, Schemas
from knit_provider.triggers.listener import APPLICATION_NAME, Waiter, is_transient

__all__ = ["APPLICATION_NAME", "AllConsumedTrigger"]
# Progress goes to the task log at most this often, however many notifications arrive.
PROGRESS_EVERY = 5.0


class AllConsumedTrigger(BaseTrigger):
    """Yield one event when the chosen run's allConsumed has landed, or on timeout or a permanent error.

    The event payload is ``{"status": "success"|"timeout"|"error", "message", "sync_job_id",
    "sync_run_id", "record_events", "processed", "emitted", "consumed"}`` (docs/internals.md).

    :param sync_job_id: the job StartSyncOperator started.
    :param sync_run_id: the run, when Knit returned it; then only this run counts.
    :param started_after: ISO-8601 time read from the landing database's clock before the sync was
        started; without a run id, the first run of the job whose first event landed at or after it
        is the one (an older run never is, even if its allConsumed lands late).
    :param landing_conn_id: Airflow connection of the landing database.
    :param poll_interval: seconds between backup checks; NOTIFY wakes the trigger much sooner.
    :param timeout: seconds to wait before yielding ``"timeout"``; ``None`` waits for ever.
    :param deadline: the absolute end of the wait (ISO-8601). Set from ``timeout`` on first construction
        and serialized, so a trigger rebuilt after a triggerer restart keeps the original deadline.
    """

    def __init__(
        self,
        *,
        sync_job_id: str | None = None,
        sync_run_id: str | None = None,
        started_after: str | datetime | None = None,
        landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
        poll_interval: float = 60.0,
        timeout: float | None = None,
        deadline: str | None = None,
    ) -> None:
        super().__init__()
        self.selector = RunSelector.create(sync_job_id, sync_run_id, started_after)
        if poll_interval <= 0:
            raise KnitInputError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        if timeout is not None and timeout < 0:
            raise KnitInputError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
        self.landing_conn_id = landing_conn_id
        self.poll_interval = float(poll_interval)
        self.timeout = None if timeout is None else float(timeout)
        self.deadline = parse_time(deadline, "deadline")
        if self.deadline is None and self.timeout is not None:
            self.deadline = datetime.now(timezone.utc) + timedelta(seconds=self.timeout)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        selector = self.selector
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sync_job_id": selector.sync_job_id,
                "sync_run_id": selector.sync_run_id,
                "started_after": selector.started_after.isoformat() if selector.started_after else None,
                "landing_conn_id": self.landing_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "deadline": self.deadline.isoformat() if self.deadline else None,
            },
        )

    async def run(self) -> AsyncGenerator[TriggerEvent, None]:
        try:
            dsn = await KnitLandingHook(self.landing_conn_id).adsn()
        except Exception as exc:  # a missing or malformed connection: nothing to retry against
            yield TriggerEvent(
                self._payload(
                    "error",
                    f"Cannot use connection {self.landing_conn_id!r} to reach "
                    f"the landing database: {type(exc).__name__}: {exc}",
                )
            )
            return
        selector = self.selector
        # By run id when known; by job only when the run is yet to be found (any run of the job may be it).
        async with Waiter(
            dsn,
            sync_run_id=selector.sync_run_id,
            sync_job_id=selector.sync_job_id if selector.sync_run_id is None else None,
            poll_interval=self.poll_interval,
        ) as waiter:
            payload = await self._wait(waiter, Redactor.for_dsn(dsn))
        # Yielded after leaving the listener, so a triggerer that stops reading here leaves nothing registered.
        yield TriggerEvent(payload)

    async def _wait(self, waiter: Waiter, redact: Redactor) -> dict[str, Any]:
        """Check, sleep until woken, check again; return the event payload. Every way out goes through here."""
        schemas = Schemas.from_env()
        what = self.selector.describe()
        last: RunState | None = None
        last_error: str | None = None
        next_progress = 0.0
        loop = asyncio.get_running_loop()
        while True:
            waiter.arm()
            try:
                state = await waiter.find_run(self.selector, schemas)
            except Exception as exc:
                detail = redact(f"{type(exc).__name__}: {exc}")
                if not is_transient(exc):
                    return self._payload("error", f"Checking {what} in the landing database failed: {detail}", last)
                if last_error is None:
                    self.log.warning(
                        "Landing database unreachable while waiting for %s (%s); checking again "
                        "once the shared connection is back",
                        what,
                        detail,
                    )
                last_error = detail
                remaining = self._remaining()
                if remaining is not None and remaining <= 0:
                    return self._timeout(last, last_error)
                await waiter.wait(remaining)  # the listener wakes every waiter when it has reconnected
                continue
            last_error = None
            if state is not None:
                problem = mismatch(self.selector, state)
                if problem:
                    return self._payload("error", problem, state)
                last = state
                if state.complete:
                    return self._payload(
                        "success", f"Run {what} is complete ({state.ending()}): {state.progress()}.", state
                    )
            if loop.time() >= next_progress:
                self.log.info(
                    "Waiting for sync.events.allConsumed of %s: %s",
                    what,
                    state.progress() if state else "no event of it has landed yet",
                )
                next_progress = loop.time() + PROGRESS_EVERY
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return self._timeout(last, None)
            await waiter.wait(remaining)  # a notification about the run, the backup poll, or the deadline

    async def on_kill(self) -> None:
        """The task was cleared, marked or killed while deferred here: say what becomes of the Knit run.

        Knit documents no call that pauses or stops a sync, so there is nothing to cancel.
        """
        self.log.warning(run_goes_on(self.selector.sync_run_id, self.selector.sync_job_id))

    def _remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return (self.deadline - datetime.now(timezone.utc)).total_seconds()

    def _timeout(self, last: RunState | None, error: str | None) -> dict[str, Any]:
        waited = f"{self.timeout:g} s" if self.timeout is not None else f"until {self.deadline}"
        return self._payload("timeout", timeout_report(self.selector, waited, last, error), last)

    def _payload(self, status: str, message: str, state: RunState | None = None) -> dict[str, Any]:
        if state is None:
            found = {
                "sync_job_id": self.selector.sync_job_id,
                "sync_run_id": self.selector.sync_run_id,
                **dict.fromkeys(("record_events", "processed", "emitted", "consumed")),
            }
        else:
            found = completion(state)
            found["sync_job_id"] = found["sync_job_id"] or self.selector.sync_job_id
        return {"status": status, "message": message, **found}
