"""StartSyncOperator: start a Knit sync for one integration and hand its ids to the tasks after it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg2
from airflow.providers.common.compat.sdk import AirflowNotFoundException
from airflow.sdk import BaseOperator

from knit_provider.exceptions import KnitConfigurationError, KnitInputError, KnitLandingClockError
from knit_provider.hooks.knit import KnitHook
from knit_provider.hooks.landing import KnitLandingHook
from knit_provider.inputs import optional_text, parse_list
from knit_provider.landing.runs import RunSelector
from knit_provider.operators.links import KnitDashboardLink, knit_link_url
from knit_provider.settings import (
    ATS_APPLICATION_MODELS,
    ATS_APPLICATIONS,
    DEFAULT_KNIT_CONN_ID,
    DEFAULT_LANDING_CONN_ID,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

# XCom key of the start dict when the task goes on to wait: pushed before the wait, so downstream
# tasks and humans have the sync's ids even if the wait fails.
START_XCOM_KEY = "knit_sync"


def check_models(data_type: str, models: list[str]) -> None:
    """Fail on model ids Knit does not know for ``ats_applications``; other data types pass through."""
    if not models:
        raise KnitInputError(f"models is empty: name at least one model id of {data_type!r}.")
    if data_type != ATS_APPLICATIONS:
        return
    unknown = [m for m in models if m not in ATS_APPLICATION_MODELS]
    if unknown:
        raise KnitInputError(
            f"models has unknown model id(s) for {ATS_APPLICATIONS}: {', '.join(map(repr, unknown))}. "
            f"Valid model ids: {', '.join(ATS_APPLICATION_MODELS)}."
        )


def read_landing_clock(landing_conn_id: str) -> datetime | None:
    """Return ``now()`` of the landing database, or None when that connection is not defined.

    The receiver stamps landed events with the database clock; reading the start time from the
    same clock keeps "events after the start" exact whatever the worker's clock says.
    """
    try:
        conn = KnitLandingHook(landing_conn_id, application_name="knit-start-sync").get_conn()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT now()")
                (now,) = cur.fetchone()
        finally:
            conn.close()
    except AirflowNotFoundException:
        return None
    except psycopg2.Error as e:
        raise KnitLandingClockError(
            f"Could not read the clock of the landing database (connection {landing_conn_id!r}): "
            f"{type(e).__name__}: {str(e).strip()}. Nothing was sent to Knit; retry when the database "
            "is reachable."
        ) from e
    return now


class StartSyncOperator(BaseOperator):
    """Start a Knit sync for one integration; return its ids and start time for the tasks after it.

    Returns (XCom) ``{"sync_job_id", "sync_run_id", "integration_id", "started_at"}``;
    ``started_at`` is the landing database's ``now()`` read just before the call, which is what
    the sensor compares landed events with. Map it over integrations with
    ``StartSyncOperator.partial(...).expand(integration_id=[...])``.

    Starting is this operator's job; waiting is :class:`~knit_provider.sensors.all_consumed.KnitAllConsumedSensor`'s
    (``KnitAllConsumedSensor(sync=start.output)``), the usual pair, as the Airbyte and dbt Cloud providers
    have it. ``wait_for_completion=True`` does both in one task for DAGs that want a single step: it
    waits with the sensor's own code (the same trigger, deferred or run in the worker, and the same
    results and errors), so the two ways cannot drift apart.

    :param destination: the webhook URL Knit delivers events to (templated).
    :param data_type: Knit's ``dataType`` (templated), default ``ats_applications``.
    :param models: model ids to sync (templated): a list, or text such as ``"a,b"`` (read by
        :func:`knit_provider.inputs.parse_list`). For
        ``ats_applications`` unknown ids fail before any call; default all six application models.
    :param frequency: Knit's sync frequency (templated), default ``standard``.
    :param integration_id: the integration to sync (templated); default the connection's extra.
    :param sync_type: ``initial_sync`` or ``delta_sync`` (templated); default Knit's.
    :param honor_scheduler: Knit's ``honorScheduler``; omitted when None.
    :param include_inactive_records: Knit's ``includeInactiveRecords``; omitted when None.
    :param knit_conn_id: the ``knit`` connection.
    :param landing_conn_id: the landing database, whose clock gives ``started_at``. When that
        connection does not exist, the worker's clock minus ``clock_margin`` is used instead.
    :param clock_margin: seconds subtracted from the worker's clock in that fallback, to absorb
        clock skew between the worker and the database.
    :param wait_for_completion: also wait, in this task, for the run's ``sync.events.allConsumed`` to
        land (the sensor's wait, see above); the XCom then adds the completion counts.
    :param poll_interval: seconds between backup checks while waiting (NOTIFY wakes it sooner).
    :param timeout: seconds to wait for completion; None waits without limit.
    :param deferrable: wait in the triggerer (frees the worker slot) rather than in the worker.
    """

    template_fields: Sequence[str] = (
        "data_type",
        "models",
        "destination",
        "frequency",
        "integration_id",
        "sync_type",
    )
    template_fields_renderers = {"models": "json"}
    operator_extra_links = (KnitDashboardLink(),)
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        destination: str,
        data_type: str = ATS_APPLICATIONS,
        models: Sequence[str] | str = ATS_APPLICATION_MODELS,
        frequency: str = "standard",
        integration_id: str | None = None,
        sync_type: str | None = None,
        honor_scheduler: bool | None = None,
        include_inactive_records: bool | None = None,
        knit_conn_id: str = DEFAULT_KNIT_CONN_ID,
        landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
        clock_margin: float = 120.0,
        wait_for_completion: bool = False,
        poll_interval: float = 60.0,
        timeout: float | None = 12 * 3600.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.destination = destination
        self.data_type = data_type
        self.models = list(models) if isinstance(models, tuple) else models
        self.frequency = frequency
        self.integration_id = integration_id
        self.sync_type = sync_type
        self.honor_scheduler = honor_scheduler
        self.include_inactive_records = include_inactive_records
        self.knit_conn_id = knit_conn_id
        self.landing_conn_id = landing_conn_id
        self.clock_margin = clock_margin
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        self.knit_dashboard_url: str | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        models = parse_list(self.models, "models")
        check_models(self.data_type, models)
        started_at = self._start_time()
        hook = KnitHook(self.knit_conn_id)
        self.knit_dashboard_url = knit_link_url(hook.knit.dashboard_url)
        started = hook.start_sync(
            data_type=self.data_type,
            models=models,
            destination=self.destination,
            frequency=self.frequency,
            # A template that rendered None gives "None": that is no integration id, not one named "None".
            integration_id=optional_text(self.integration_id),
            sync_type=optional_text(self.sync_type),
            honor_scheduler=self.honor_scheduler,
            include_inactive_records=self.include_inactive_records,
        )
        result = {
            "sync_job_id": started.sync_job_id,
            "sync_run_id": started.sync_run_id,
            "integration_id": started.integration_id,
            "started_at": started_at.isoformat(),
        }
        self.knit_dashboard_url = knit_link_url(hook.knit.dashboard_url, result)
        if not self.wait_for_completion:
            return result
        # The wait is KnitAllConsumedSensor's (sensors/all_consumed.py): the same trigger, the same ending.
        from knit_provider.sensors.all_consumed import defer_timeout, run_trigger_here, wait_trigger

        context["ti"].xcom_push(key=START_XCOM_KEY, value=result)
        selector = RunSelector.create(started.sync_job_id, started.sync_run_id, started_at)
        trigger = wait_trigger(selector, self.landing_conn_id, self.poll_interval, self.timeout)
        if self.deferrable:
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                kwargs={"started": result, "dashboard_url": self.knit_dashboard_url},
                timeout=defer_timeout(self.timeout),
            )
        self.log.info("Waiting in the worker for allConsumed of sync job %s", started.sync_job_id)
        event = run_trigger_here(trigger)
        return self.execute_complete(context, event, started=result, dashboard_url=self.knit_dashboard_url)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any],
        started: dict[str, Any] | None = None,
        dashboard_url: str | None = None,
    ) -> dict[str, Any]:
        """Turn the trigger's event into the XCom: the start dict plus the completion counts.

        ``started`` arrives with the defer kwargs from the triggerer; ``dag.test()`` resumes with the
        event alone, so the start dict is then read back from the XCom pushed before deferring.
        """
        from knit_provider.sensors.all_consumed import completion_from_event

        if started is None:
            ti = context["ti"]
            started = ti.xcom_pull(task_ids=self.task_id, key=START_XCOM_KEY, map_indexes=ti.map_index)
            if not started:
                raise KnitConfigurationError(
                    f"Task {self.task_id!r} resumed without the sync it started (no XCom {START_XCOM_KEY!r}); "
                    "clear the task to start a new sync."
                )
        self.knit_dashboard_url = dashboard_url
        completion = completion_from_event(event)
        # A run id learnt from the landed events fills the gap when Knit's answer had none.
        return {**started, **{k: v for k, v in completion.items() if v is not None or k not in started}}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage: the integration's Knit dataset in, the landing events table out (``knit_provider.lineage``)."""
        from knit_provider.lineage import start_sync_lineage

        return start_sync_lineage(
            knit_conn_id=self.knit_conn_id,
            integration_id=self.integration_id,
            data_type=self.data_type,
            landing_conn_id=self.landing_conn_id,
        )

    def _start_time(self) -> datetime:
        now = read_landing_clock(self.landing_conn_id)
        if now is not None:
            return now
        fallback = datetime.now(timezone.utc) - timedelta(seconds=self.clock_margin)
        self.log.warning(
            "Connection %r (the landing database) is not defined, so started_at is taken from this "
            "worker's clock minus %.0fs (%s) instead of the database clock: a sensor comparing it with "
            "landed events may be off by the clock skew between this worker and the database.",
            self.landing_conn_id,
            self.clock_margin,
            fallback.isoformat(),
        )
        return fallback
