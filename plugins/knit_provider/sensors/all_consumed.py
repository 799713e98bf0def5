"""Wait until Knit says every event of *this* DAG run's sync was consumed: ``sync.events.allConsumed`` landed.

The split of roles: ``StartSyncOperator`` starts a sync; :class:`KnitAllConsumedSensor` waits for it. The
operator's ``wait_for_completion=True`` is a shortcut for the two in one task, and it waits with this
module's code, not its own: :func:`wait_trigger` (the one :class:`AllConsumedTrigger` both defer to,
with :func:`defer_timeout`), :func:`run_trigger_here` (the same trigger run in the worker, when not
deferrable) and :func:`completion_from_event` (how every deferred or in-worker wait ends). Only the
sensor's ``poke``/``reschedule`` modes check with a short psycopg2 lookup instead, because a
rescheduled task must hold nothing between checks; that lookup runs the same SQL as the trigger.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    conf,
)
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from knit_provider.exceptions import KnitError
from knit_provider.hooks.landing import KnitLandingHook
from knit_provider.inputs import optional_text, parse_mapping
from knit_provider.landing.runs import (
    RunSelector,
    RunState,
    completion,
    find_run,
    mismatch,
    timeout_report,
)
from knit_provider.settings import DEFAULT_LANDING_CONN_ID, Schemas
from knit_provider.triggers.all_consumed import AllConsumedTrigger
from knit_provider.triggers.run_began import RunBeganTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

APPLICATION_NAME = "knit-all-consumed-sensor"
# Airflow's own deferral timeout is only a backstop: the trigger times out first, with a report. It
# still ends a wait whose triggerer was lost.
DEFER_GRACE = timedelta(minutes=5)
XCOM_KEYS = ("sync_job_id", "sync_run_id", "record_events", "processed", "emitted", "consumed")


def default_deferrable() -> bool:
    """Whether a Knit wait defers when the DAG does not say.

    Airflow ships ``[operators] default_deferrable = false`` and writes it into every generated
    airflow.cfg, so reading the option cannot tell a deliberate "false" from the stock default. Knit's
    waits are long and woken by NOTIFY, so they defer unless the deployment says otherwise in the
    environment (``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE``), which is where such a choice is made.
    """
    if os.environ.get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE") is not None:
        return conf.getboolean("operators", "default_deferrable", fallback=True)
    return True


def wait_trigger(
    selector: RunSelector, landing_conn_id: str, poll_interval: float, timeout: float | None
) -> AllConsumedTrigger:
    """The trigger every Knit wait runs, deferred or in the worker."""
    return AllConsumedTrigger(
        sync_job_id=selector.sync_job_id,
        sync_run_id=selector.sync_run_id,
        started_after=selector.started_after,
        landing_conn_id=landing_conn_id,
        poll_interval=poll_interval,
        timeout=timeout,
    )


def defer_timeout(timeout: float | None) -> timedelta | None:
    """Airflow's deferral timeout for a wait of ``timeout`` seconds (None: no limit)."""
    return None if timeout is None else timedelta(seconds=timeout) + DEFER_GRACE


def run_trigger_here(trigger: AllConsumedTrigger | RunBeganTrigger) -> dict[str, Any]:
    """Run the trigger in this process (a wait that does not defer) and return its event's payload.

    The same trigger as a deferred wait, so NOTIFY wakes this wait too and it ends the same way.
    """

    async def first_event() -> dict[str, Any]:
        async with aclosing(trigger.run()) as events:
            async for event in events:
                return dict(event.payload)
        raise KnitError(f"{type(trigger).__name__} stopped without an event; the wait cannot tell the outcome.")

    return asyncio.run(first_event())


def completion_from_event(event: Any) -> dict[str, Any]:
    """Turn an :class:`AllConsumedTrigger` event into the XCom dict, or raise with the trigger's report.

    :raises AirflowSensorTimeout: the run did not complete in time (the message says what had landed).
    :raises AirflowException: the wait failed (e.g. the landing database or the run id is wrong).
    """
    if not isinstance(event, Mapping) or event.get("status") not in ("success", "timeout", "error"):
        raise AirflowException(
            f"Expected an AllConsumedTrigger event with status success/timeout/error, got {event!r}: "
            "was the task resumed by another trigger?"
        )
    if event["status"] == "success":
        return {key: event.get(key) for key in XCOM_KEYS}
    if event["status"] == "timeout":
        raise AirflowSensorTimeout(event.get("message") or "Timed out waiting for sync.events.allConsumed.")
    raise AirflowException(f"Waiting for sync.events.allConsumed failed: {event.get('message')}")


class KnitAllConsumedSensor(BaseSensorOperator):
    """Wait for ``sync.events.allConsumed`` of the run a StartSyncOperator started; return its id and counts.

    Which run: ``sync_run_id`` when known; otherwise the first run of ``sync_job_id`` whose first event
    landed at or after ``started_after`` (a time StartSyncOperator read from the landing database's clock),
    so an older run's late allConsumed never ends the wait.

    Feeding it from StartSyncOperator, also inside a mapped task group (each map index pulls its own
    XCom)::

        @task_group
        def sync_integration(integration_id):
            start = StartSyncOperator(task_id="start_sync", integration_id=integration_id, ...)
            KnitAllConsumedSensor(task_id="wait_all_consumed", sync=start.output)

        sync_integration.expand(integration_id=["int-a", "int-b"])

    Values given one by one override the ones in ``sync``; templates work for all of them, e.g.
    ``sync_run_id="{{ ti.xcom_pull(task_ids='start_sync')['sync_run_id'] }}"`` (a rendered ``"None"``
    counts as absent).

    Modes: deferrable (the default, see :func:`default_deferrable`) checks once in the worker and then
    hands the wait to :class:`AllConsumedTrigger`, which is woken by NOTIFY the moment allConsumed
    commits; ``deferrable=False`` with ``mode="poke"`` or ``mode="reschedule"`` polls every
    ``poke_interval`` seconds instead. Passing ``mode="reschedule"`` alone implies ``deferrable=False``.

    Returns (XCom) ``{"sync_job_id", "sync_run_id", "record_events", "processed", "emitted", "consumed"}``.
    On timeout the task fails with what had landed and what Knit last reported; with ``soft_fail=True``
    it is skipped instead.

    :param sync: StartSyncOperator's XCom dict (templated; an ``XComArg`` such as ``start.output`` works).
    :param sync_job_id: the sync job (templated).
    :param sync_run_id: the sync run, if Knit returned it (templated).
    :param started_after: ISO-8601 start time from the landing database's clock (templated).
    :param landing_conn_id: Airflow connection of the landing database.
    :param deferrable: defer to the triggerer; ``None`` picks the default described above.
    :param poke_interval: seconds between checks when polling; when deferred, the trigger's backup poll.
    :param timeout: seconds to wait in total before failing (or skipping, with ``soft_fail``).
    """

    template_fields: Sequence[str] = ("sync", "sync_job_id", "sync_run_id", "started_after")
    ui_color = "#d8f0e6"

    def __init__(
        self,
        *,
        sync: Any = None,
        sync_job_id: str | None = None,
        sync_run_id: str | None = None,
        started_after: str | None = None,
        landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sync = sync
        self.sync_job_id = sync_job_id
        self.sync_run_id = sync_run_id
        self.started_after = started_after
        self.landing_conn_id = landing_conn_id
        if deferrable is None:
            deferrable = self.mode != "reschedule" and default_deferrable()
        self.deferrable = deferrable
        self._last: RunState | None = None
        self._last_error: str | None = None

    def run_selector(self) -> RunSelector:
        """The run to wait for, from the rendered fields; a wrong or missing value fails the task at once.

        Every refusal is a :class:`~knit_provider.exceptions.KnitInputError`, an ``AirflowFailException``.
        """
        sync = parse_mapping(
            self.sync,
            "sync",
            " Pass sync=start_sync.output (StartSyncOperator's XCom dict), or give sync_job_id / sync_run_id / "
            "started_after one by one.",
        )

        def pick(name: str) -> Any:
            value = getattr(self, name)
            return value if optional_text(value) is not None else sync.get(name)

        return RunSelector.create(
            pick("sync_job_id"),
            pick("sync_run_id"),
            self.started_after if optional_text(self.started_after) else sync.get("started_at"),
        )

    def check(self, selector: RunSelector) -> RunState | None:
        """Look the run up once (a short psycopg2 connection); connection trouble counts as "not yet"."""
        import psycopg2
        import psycopg2.extras

        try:
            conn = KnitLandingHook(self.landing_conn_id, application_name=APPLICATION_NAME).get_conn()
        except psycopg2.OperationalError as exc:
            self._last_error = f"OperationalError: {str(exc).strip()}"
            self.log.warning("Landing database unreachable (%s); will check again", self._last_error)
            return None
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                state = find_run(cur, selector, Schemas.from_env())
        except psycopg2.OperationalError as exc:
            self._last_error = f"OperationalError: {str(exc).strip()}"
            self.log.warning("Landing database unreachable (%s); will check again", self._last_error)
            return None
        except psycopg2.Error as exc:
            raise AirflowException(
                f"Checking {selector.describe()} in the landing database failed: "
                f"{type(exc).__name__}: {str(exc).strip()}"
            ) from exc
        finally:
            conn.close()
        self._last_error = None
        if state is not None:
            problem = mismatch(selector, state)
            if problem:
                raise AirflowFailException(problem)
            self._last = state
        return state

    def poke(self, context: Context) -> PokeReturnValue:
        selector = self.run_selector()
        state = self.check(selector)
        if state is not None and state.complete:
            self.log.info("%s is complete (%s): %s", selector.describe(), state.ending(), state.progress())
            return PokeReturnValue(is_done=True, xcom_value=completion(state))
        self.log.info(
            "Waiting for sync.events.allConsumed of %s: %s",
            selector.describe(),
            state.progress() if state else "no event of it has landed yet",
        )
        return PokeReturnValue(is_done=False)

    def execute(self, context: Context) -> Any:
        selector = self.run_selector()
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout as exc:
                raise AirflowSensorTimeout(self._report(selector)) from exc
            except AirflowSkipException as exc:
                raise AirflowSkipException(f"{exc} {self._report(selector)}") from exc
        done = self.poke(context)
        if done:
            return done.xcom_value
        self.defer(
            trigger=wait_trigger(selector, self.landing_conn_id, max(self.poke_interval, 1.0), self.timeout),
            method_name="execute_complete",
            timeout=defer_timeout(self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: return the XCom or raise its report (soft_fail applies)."""
        result = completion_from_event(event)
        self.log.info("sync.events.allConsumed of run %s landed: %s", result["sync_run_id"], result)
        return result

    def _report(self, selector: RunSelector) -> str:
        return timeout_report(selector, f"{self.timeout:g} s", self._last, self._last_error)
