"""StartSyncOperator: start a Knit sync for one integration (or adopt the run Knit started itself) and hand its ids on.

``sync.start`` is not idempotent, so every try of the task records what it asked for and what it got in the
landing store (``knit_provider.landing.starts``) before and after calling Knit: a retried task reuses an
answered start, and after a start whose answer was lost it first looks for the run that start began.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg2
from airflow.providers.common.compat.sdk import AirflowException, AirflowNotFoundException
from airflow.sdk import BaseOperator

from knit_provider import data_types
from knit_provider.data_types import DataTypeSpec
from knit_provider.data_types.registry import UnknownDataTypeError
from knit_provider.exceptions import KnitConfigurationError, KnitInputError, KnitLandingClockError
from knit_provider.hooks.knit import KnitHook, SyncStarted, check_start_time
from knit_provider.hooks.landing import KnitLandingHook
from knit_provider.inputs import optional_flag, optional_seconds, optional_text, optional_whole, parse_list, parse_time
from knit_provider.landing import starts
from knit_provider.landing.runs import RunSelector
from knit_provider.operators.links import KnitDashboardLink, knit_link_url
from knit_provider.settings import ATS_APPLICATIONS, DEFAULT_KNIT_CONN_ID, DEFAULT_LANDING_CONN_ID, Schemas
from knit_provider.triggers.run_began import RunBeganTrigger

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

# XCom key of the start dict when the task goes on to wait: pushed before the wait, so downstream
# tasks and humans have the sync's ids even if the wait fails.
START_XCOM_KEY = "knit_sync"
# Airflow's deferral timeout beyond the wait for Knit's own run: the trigger itself ends the wait.
DEFER_GRACE = timedelta(minutes=5)


def _spec(data_type: str) -> DataTypeSpec | None:
    """The provider's spec of ``data_type``; None for one it does not normalize (Knit has more types)."""
    try:
        return data_types.get(data_type)
    except UnknownDataTypeError:
        return None


def resolve_models(data_type: str, models: Sequence[str] | str | None) -> list[str]:
    """The model ids to ask for: ``models`` as rendered, else the type's default models (a known type)."""
    if models is not None:
        return parse_list(models, "models")
    spec = _spec(data_type)
    if spec is None:
        raise KnitInputError(
            f"models is not set and knit_provider knows no default models for {data_type!r}: "
            "name the model ids to sync."
        )
    return list(spec.default_models)


def check_models(data_type: str, models: list[str]) -> None:
    """Fail on model ids Knit does not know for a data type the provider knows; other data types pass through."""
    if not models:
        raise KnitInputError(f"models is empty: name at least one model id of {data_type!r}.")
    spec = _spec(data_type)
    if spec is None:
        return
    unknown = spec.unknown_models(models)
    if unknown:
        raise KnitInputError(
            f"models has unknown model id(s) for {spec.name}: {', '.join(map(repr, unknown))}. "
            f"Valid model ids: {', '.join(spec.model_ids)}."
        )


def attempt_key(context: Any) -> starts.AttemptKey | None:
    """The task instance running this try, or None outside one (``execute`` called directly)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    parts = [getattr(ti, name, None) for name in ("dag_id", "run_id", "task_id", "map_index")]
    if any(part is None for part in parts):
        return None
    dag_id, run_id, task_id, map_index = (str(part) for part in parts)
    return starts.AttemptKey(dag_id, run_id, task_id, int(map_index))


class LandingStarts:
    """The landing database as the start path uses it: its clock, the attempts table, the runs that began."""

    def __init__(self, landing_conn_id: str) -> None:
        self.landing_conn_id = landing_conn_id
        self.schemas = Schemas.from_env()

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A cursor in a transaction of its own; an unreachable database is a transient, nothing-sent error."""
        try:
            conn = KnitLandingHook(self.landing_conn_id, application_name="knit-start-sync").get_conn()
        except psycopg2.Error as e:
            raise self._unreachable(e) from e
        try:
            with conn, conn.cursor() as cur:
                yield cur
        except psycopg2.Error as e:
            raise self._unreachable(e) from e
        finally:
            conn.close()

    def _unreachable(self, e: psycopg2.Error) -> KnitLandingClockError:
        return KnitLandingClockError(
            f"Could not use the landing database (connection {self.landing_conn_id!r}): "
            f"{type(e).__name__}: {str(e).strip()}. Nothing was sent to Knit; retry when the database "
            "is reachable."
        )

    def now(self) -> datetime:
        with self.cursor() as cur:
            cur.execute("SELECT now()")
            now: datetime = cur.fetchone()[0]
            return now

    def wait_for_begun(
        self, integration_id: str, data_type: str, since: datetime, sync_type: str | None, grace: float
    ) -> starts.BegunRun | None:
        conn = KnitLandingHook(self.landing_conn_id, application_name="knit-start-sync").get_conn()
        conn.autocommit = True
        try:
            return starts.wait_for_begun(conn, self.schemas, integration_id, data_type, since, sync_type, grace)
        finally:
            conn.close()


def landing_starts(landing_conn_id: str) -> LandingStarts | None:
    """The landing store's start helpers, or None when that connection is not defined (worker clock fallback)."""
    try:
        KnitLandingHook(landing_conn_id).connection  # noqa: B018 - read only to learn whether it exists
    except AirflowNotFoundException:
        return None
    return LandingStarts(landing_conn_id)


@dataclass(frozen=True)
class StartRequest:
    """The rendered, checked arguments of one start: what is sent to Knit and what a recovery looks for."""

    data_type: str
    models: list[str]
    integration_id: str
    sync_type: str | None
    body: dict[str, Any]


class StartSyncOperator(BaseOperator):
    """Start a Knit sync for one integration; return its ids and start time for the tasks after it.

    Returns (XCom) ``{"sync_job_id", "sync_run_id", "integration_id", "started_at", "started_by",
    "waited_seconds"}``; ``started_at`` is the landing database's ``now()`` read just before the first
    call (what the sensor compares landed events with), ``started_by`` is ``"airflow"`` or ``"knit"`` (a
    run Knit started itself, adopted), ``waited_seconds`` how long the task waited for Knit's own run.
    Map it over integrations with ``StartSyncOperator.partial(...).expand(integration_id=[...])``.

    Starting is this operator's job; waiting is :class:`~knit_provider.sensors.all_consumed.KnitAllConsumedSensor`'s
    (``KnitAllConsumedSensor(sync=start.output)``), the usual pair, as the Airbyte and dbt Cloud providers
    have it. ``wait_for_completion=True`` does both in one task for DAGs that want a single step: it
    waits with the sensor's own code (the same trigger, deferred or run in the worker, and the same
    results and errors), so the two ways cannot drift apart.

    Retries are safe: each try records its start in the landing store (``sync_starts``) before calling
    Knit. A later try of the same task instance reuses a start Knit answered, and after one whose answer
    was lost it looks for the run that start began (up to ``unknown_outcome_grace`` seconds) before
    calling ``sync.start`` again. Knit documents no call that stops a sync: a task that stops leaves its
    run going on (``on_kill`` says so in the log).

    :param data_type: Knit's ``dataType`` (templated), default ``ats_applications``.
    :param models: model ids to sync (templated): a list, or text such as ``"a,b"`` (read by
        :func:`knit_provider.inputs.parse_list`). For a data type the provider knows
        (``knit_provider.data_types``), unknown ids fail before any call, and None means its default
        models (all six for ``ats_applications``); other types' ids go to Knit as given.
    :param destination: a webhook URL sent as ``destination`` (templated), the applications page's field;
        not in Knit's "Start a sync" reference, which pushes to the webhook set per data category in
        Knit's dashboard. Omitted when None.
    :param frequency: ``frequency`` (templated), also the applications page's field; omitted when None.
    :param integration_id: the integration to sync (templated); default the connection's extra.
    :param sync_type: ``initial_sync`` or ``delta_sync`` (templated); default Knit's.
    :param honor_scheduler: Knit's ``honorScheduler`` (templated); omitted when None.
    :param include_inactive_records: Knit's ``includeInactiveRecords`` (templated); omitted when None.
    :param start_hour: Knit's ``startHour``, 0-23 UTC (templated); omitted when None.
    :param start_minute: Knit's ``startMinute``, 0-59 (templated); omitted when None.
    :param adopt_since: with ``adopt_grace``, first wait for a run of the integration and data type (and
        ``sync_type``, when given) whose first event landed at or after this time (templated, ISO-8601;
        the landing database's clock), and return it without calling Knit; None calls Knit at once.
    :param adopt_grace: seconds to wait for that run (templated); None turns adopting off.
    :param unknown_outcome_grace: seconds to wait, after a ``sync.start`` whose answer was lost, for the
        run it may have begun, before sending it again.
    :param knit_conn_id: the ``knit`` connection.
    :param landing_conn_id: the landing database, whose clock gives ``started_at`` and which holds the
        record of each start. When that connection does not exist, the worker's clock minus
        ``clock_margin`` is used instead, nothing is recorded, and a lost answer is not retried.
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
        "honor_scheduler",
        "include_inactive_records",
        "start_hour",
        "start_minute",
        "adopt_since",
        "adopt_grace",
    )
    template_fields_renderers = {"models": "json"}
    operator_extra_links = (KnitDashboardLink(),)
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        data_type: str = ATS_APPLICATIONS,
        models: Sequence[str] | str | None = None,
        destination: str | None = None,
        frequency: str | None = None,
        integration_id: str | None = None,
        sync_type: str | None = None,
        honor_scheduler: bool | str | None = None,
        include_inactive_records: bool | str | None = None,
        start_hour: int | str | None = None,
        start_minute: int | str | None = None,
        adopt_since: datetime | str | None = None,
        adopt_grace: float | str | None = None,
        unknown_outcome_grace: float = 120.0,
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
        self.data_type = data_type
        self.models = list(models) if isinstance(models, tuple) else models
        self.destination = destination
        self.frequency = frequency
        self.integration_id = integration_id
        self.sync_type = sync_type
        self.honor_scheduler = honor_scheduler
        self.include_inactive_records = include_inactive_records
        self.start_hour = start_hour
        self.start_minute = start_minute
        self.adopt_since = adopt_since
        self.adopt_grace = adopt_grace
        if unknown_outcome_grace < 0:
            raise KnitInputError(f"unknown_outcome_grace must be 0 or more seconds, got {unknown_outcome_grace!r}.")
        self.unknown_outcome_grace = unknown_outcome_grace
        self.knit_conn_id = knit_conn_id
        self.landing_conn_id = landing_conn_id
        self.clock_margin = clock_margin
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        self.knit_dashboard_url: str | None = None
        self._run: tuple[str | None, str | None] | None = None  # (run, job) once known, for on_kill

    # -- the start ------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        request = self._request()
        landing = landing_starts(self.landing_conn_id)
        key = attempt_key(context)
        if landing is not None and key is not None:
            earlier = self._earlier(landing, key, request)
            if earlier is not None:
                return self._finish(context, earlier)
        adopt = self._adopt_window()
        if adopt is not None:
            if landing is None:
                raise KnitConfigurationError(
                    f"adopt_grace is set but connection {self.landing_conn_id!r} (the landing database) is not "
                    "defined: Knit's own run can only be recognised in the landing store."
                )
            since, grace = adopt
            trigger = RunBeganTrigger(
                integration_id=request.integration_id,
                data_type=request.data_type,
                since=since,
                grace=grace,
                sync_type=request.sync_type,
                landing_conn_id=self.landing_conn_id,
            )
            if self.deferrable:
                self.defer(trigger=trigger, method_name="execute_adopt", timeout=timedelta(seconds=grace) + DEFER_GRACE)
            from knit_provider.sensors.all_consumed import run_trigger_here

            return self.execute_adopt(context, run_trigger_here(trigger))
        return self._finish(context, self._start(landing, key, request, waited=0.0))

    def execute_adopt(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the wait for Knit's own run: adopt it, or start one as usual."""
        request = self._request()
        landing = landing_starts(self.landing_conn_id)
        key = attempt_key(context)
        status, waited = event.get("status"), float(event.get("waited_seconds") or 0.0)
        if status == "error":
            raise AirflowException(f"Waiting for Knit's own run failed: {event.get('message')}")
        if status == "began":
            self.log.info(
                "Knit started it: run %s (first event at %s)", event["sync_run_id"], event["first_received_at"]
            )
            result = {
                "sync_job_id": event["sync_job_id"],
                "sync_run_id": event["sync_run_id"],
                "integration_id": request.integration_id,
                "started_at": event["first_received_at"],
                "started_by": "knit",
                "waited_seconds": waited,
            }
            if landing is not None and key is not None:
                adopted = SyncStarted(event["sync_job_id"], event["sync_run_id"], None, request.integration_id)
                requested_at = parse_time(event["first_received_at"], "first_received_at")
                self._record(landing, key, request, adopted, waited, "knit", requested_at)
            return self._finish(context, result)
        self.log.info(
            "started by Airflow after %.1f min: no run of %s began within the grace period",
            waited / 60,
            request.integration_id,
        )
        return self._finish(context, self._start(landing, key, request, waited=waited))

    def _request(self) -> StartRequest:
        """Read the rendered fields; every refusal comes before anything is sent or recorded."""
        models = resolve_models(self.data_type, self.models)
        check_models(self.data_type, models)
        start_hour = optional_whole(self.start_hour, "start_hour")
        start_minute = optional_whole(self.start_minute, "start_minute")
        check_start_time(start_hour, start_minute)
        hook = KnitHook(self.knit_conn_id)
        sync_type = optional_text(self.sync_type)
        body = {
            "destination": optional_text(self.destination),
            "frequency": optional_text(self.frequency),
            "sync_type": sync_type,
            "honor_scheduler": optional_flag(self.honor_scheduler, "honor_scheduler"),
            "include_inactive_records": optional_flag(self.include_inactive_records, "include_inactive_records"),
            "start_hour": start_hour,
            "start_minute": start_minute,
        }
        # A template that rendered None gives "None": that is no integration id, not one named "None".
        integration = hook.integration_for(optional_text(self.integration_id))
        return StartRequest(self.data_type, models, integration, sync_type, body)

    def _adopt_window(self) -> tuple[datetime, float] | None:
        grace = optional_seconds(self.adopt_grace, "adopt_grace")
        if grace is None:
            return None
        since = parse_time(self.adopt_since, "adopt_since")
        if since is None:
            raise KnitInputError(
                "adopt_grace is set but adopt_since is empty: give the time Knit's run may begin after."
            )
        return since, grace

    def _earlier(self, landing: LandingStarts, key: starts.AttemptKey, request: StartRequest) -> dict[str, Any] | None:
        """What an earlier try of this task instance left: its answered start, or the run its lost start began."""
        with landing.cursor() as cur:
            earlier = starts.read_attempt(cur, landing.schemas, key)
        if earlier is None:
            return None
        if earlier.answered:
            # The table's CHECK: an answered row names its job and who started it.
            assert earlier.sync_job_id is not None
            assert earlier.started_by is not None
            self.log.info(
                "An earlier try already has run %s of job %s (started by %s): reusing it, Knit is not called again",
                earlier.sync_run_id,
                earlier.sync_job_id,
                earlier.started_by,
            )
            return self._result(
                request.integration_id,
                earlier.sync_job_id,
                earlier.sync_run_id,
                earlier.first_requested_at,
                earlier.started_by,
                earlier.waited_seconds or 0.0,
            )
        found = self._recover(landing, key, request, earlier.first_requested_at, waited=earlier.waited_seconds or 0.0)
        if found is None:
            return None
        self.log.info(
            "An earlier try sent sync.start without an answer; attached to run %s that began after it "
            "(%s); sync.start not sent again",
            found.sync_run_id,
            earlier.first_requested_at.isoformat(),
        )
        return self._result(
            request.integration_id,
            found.sync_job_id,
            found.sync_run_id,
            earlier.first_requested_at,
            "airflow",
            earlier.waited_seconds or 0.0,
        )

    def _recover(
        self,
        landing: LandingStarts,
        key: starts.AttemptKey | None,
        request: StartRequest,
        since: datetime,
        waited: float,
    ) -> SyncStarted | None:
        """The run a start of unknown outcome began: one that landed since ``since``, waited for up to the grace."""
        self.log.warning(
            "A sync.start of %s may have started a run without the answer arriving: looking for a run of it "
            "that began at or after %s, for up to %.0f s, before sending it again",
            request.integration_id,
            since.isoformat(),
            self.unknown_outcome_grace,
        )
        run = landing.wait_for_begun(
            request.integration_id, request.data_type, since, request.sync_type, self.unknown_outcome_grace
        )
        if run is None:
            return None
        found = SyncStarted(run.sync_job_id, run.sync_run_id, None, request.integration_id)
        if key is not None:
            self._record(landing, key, request, found, waited)
        return found

    def _start(
        self, landing: LandingStarts | None, key: starts.AttemptKey | None, request: StartRequest, waited: float
    ) -> dict[str, Any]:
        """Record the request, call sync.start (recovering a lost answer from the landing store), record the answer."""
        hook = KnitHook(self.knit_conn_id)
        self.knit_dashboard_url = knit_link_url(hook.knit.dashboard_url)
        started_at = self._requested_at(landing, key, request)
        recover: Callable[[datetime], SyncStarted | None] | None = None
        if landing is not None:
            # The hook's time is the worker's; the landing store compares on its own clock, read just before.
            recover = lambda _first_attempt: self._recover(landing, key, request, started_at, waited)  # noqa: E731
        started = hook.start_sync(
            request.data_type, request.models, integration_id=request.integration_id, recover=recover, **request.body
        )
        self._run = (started.sync_run_id, started.sync_job_id)
        if landing is not None and key is not None:
            self._record(landing, key, request, started, waited)
        return self._result(
            started.integration_id, started.sync_job_id, started.sync_run_id, started_at, "airflow", waited
        )

    def _requested_at(
        self, landing: LandingStarts | None, key: starts.AttemptKey | None, request: StartRequest
    ) -> datetime:
        """The database clock when this start is first requested, recorded before sending when there is a task."""
        if landing is None:
            return self._worker_clock()
        if key is None:
            return landing.now()
        with landing.cursor() as cur:
            return starts.record_request(cur, landing.schemas, key, request.integration_id, request.data_type)

    def _record(
        self,
        landing: LandingStarts,
        key: starts.AttemptKey,
        request: StartRequest,
        started: SyncStarted,
        waited: float,
        started_by: starts.StartedBy = "airflow",
        requested_at: datetime | None = None,
    ) -> None:
        """Record the run this try ended up with (``requested_at``: for a run adopted, as nothing was sent)."""
        with landing.cursor() as cur:
            starts.record_answer(
                cur,
                landing.schemas,
                key,
                integration_id=request.integration_id,
                data_type=request.data_type,
                sync_job_id=started.sync_job_id,
                sync_run_id=started.sync_run_id,
                started_by=started_by,
                waited_seconds=waited,
                requested_at=requested_at,
            )

    @staticmethod
    def _result(
        integration_id: str,
        sync_job_id: str,
        sync_run_id: str | None,
        started_at: datetime,
        started_by: str,
        waited_seconds: float,
    ) -> dict[str, Any]:
        return {
            "sync_job_id": sync_job_id,
            "sync_run_id": sync_run_id,
            "integration_id": integration_id,
            "started_at": started_at.isoformat(),
            "started_by": started_by,
            "waited_seconds": waited_seconds,
        }

    def _worker_clock(self) -> datetime:
        fallback = datetime.now(timezone.utc) - timedelta(seconds=self.clock_margin)
        self.log.warning(
            "Connection %r (the landing database) is not defined, so started_at is taken from this "
            "worker's clock minus %.0fs (%s) instead of the database clock: a sensor comparing it with "
            "landed events may be off by the clock skew between this worker and the database. Nothing "
            "records this start, so a sync.start whose answer is lost is not sent again.",
            self.landing_conn_id,
            self.clock_margin,
            fallback.isoformat(),
        )
        return fallback

    # -- after the start: hand over, or wait ----------------------------------------------------

    def _finish(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        self._run = (result["sync_run_id"], result["sync_job_id"])
        self.knit_dashboard_url = knit_link_url(KnitHook(self.knit_conn_id).knit.dashboard_url, result)
        if not self.wait_for_completion:
            return result
        # The wait is KnitAllConsumedSensor's (sensors/all_consumed.py): the same trigger, the same ending.
        from knit_provider.sensors.all_consumed import defer_timeout, run_trigger_here, wait_trigger

        context["ti"].xcom_push(key=START_XCOM_KEY, value=result)
        selector = RunSelector.create(result["sync_job_id"], result["sync_run_id"], result["started_at"])
        trigger = wait_trigger(selector, self.landing_conn_id, self.poll_interval, self.timeout)
        if self.deferrable:
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                kwargs={"started": result, "dashboard_url": self.knit_dashboard_url},
                timeout=defer_timeout(self.timeout),
            )
        self.log.info("Waiting in the worker for allConsumed of sync job %s", result["sync_job_id"])
        event = run_trigger_here(trigger)
        return self.execute_complete(context, event, started=result, dashboard_url=self.knit_dashboard_url)

    def on_kill(self) -> None:
        """Say what happens to the Knit run when the task is stopped: Knit documents no call that stops a sync."""
        run, job = self._run or (None, None)
        self.log.warning(starts.run_goes_on(run, job))

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
