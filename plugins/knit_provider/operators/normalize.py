"""KnitNormalizeRunsOperator: turn completed runs' landed events into the normalized tables, then reconcile."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import BaseOperator

from knit_provider.data_types.registry import UnknownDataTypeError, get
from knit_provider.exceptions import KnitInputError
from knit_provider.inputs import parse_list, required_time
from knit_provider.settings import ATS_APPLICATIONS, DEFAULT_LANDING_CONN_ID, Schemas

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


class KnitNormalizeRunsOperator(BaseOperator):
    """Normalize completed Knit runs into the ``knit`` tables, then check nothing is missing.

    Choose the runs one way: ``run_ids`` (e.g. the sensor's ``sync_run_id``), ``pending=True``
    (every completed run not normalized yet, oldest first), or ``since``/``until`` (runs whose
    allConsumed landed in that interval: what a backfill re-normalizes). Each run is normalized in
    its own transaction; normalization is idempotent and order-independent, so retries and
    overlapping backfills are safe. Afterwards each complete run is reconciled: fewer distinct
    record events landed than Knit emitted fails the task, without retries, with both numbers.

    Returns (XCom) ``{"data_type": ..., "runs": [...per-run results...], "reconciliations": [...],
    "normalized": n, "records_changed": n, "type_error_events": n}`` (for ``ats_applications`` also
    ``applications_changed``, the same count under the name of earlier releases). Given the type's asset as
    an outlet, its event carries what changed (:mod:`knit_provider.chaining`).

    :param data_type: the Knit data type whose runs ``pending`` and ``since``/``until`` select (templated;
        default ``ats_applications``); each run is normalized by its own type's spec, and ``run_ids`` of another
        type fail the task.

    :param run_ids: sync run ids (templated; a list, one id, ids separated by commas, or an XComArg;
        read by :func:`knit_provider.inputs.parse_list`).
    :param pending: normalize every completed, not yet normalized run instead.
    :param since: start of the completion interval, inclusive (templated, aware ISO time).
    :param until: end of the completion interval, exclusive (templated).
    :param integration_ids: limit ``pending`` / interval selection to these integrations (templated).
    :param force: also normalize runs whose allConsumed has not landed (they stay pending).
    :param skip_normalized: pass over a run another task normalized already (``pending`` always does), so a
        run that the scheduled DAG and the on-delivery DAG both see is normalized once, by whichever is first.
        Off, a run is normalized again (what a backfill asks for; idempotent).
    :param reconcile: reconcile each normalized complete run against Knit's counts (default True).
    :param landing_conn_id: Postgres connection of the landing store and normalized tables.
    :param landing_schema: landing schema (default ``$KNIT_LANDING_SCHEMA`` or ``knit_landing``).
    :param target_schema: normalized schema (default ``$KNIT_SCHEMA`` or ``knit``).
    """

    template_fields: Sequence[str] = ("run_ids", "data_type", "since", "until", "integration_ids")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        run_ids: str | Sequence[str] | None = None,
        data_type: str = ATS_APPLICATIONS,
        pending: bool = False,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        integration_ids: str | Sequence[str] | None = None,
        force: bool = False,
        skip_normalized: bool = False,
        reconcile: bool = True,
        landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
        landing_schema: str | None = None,
        target_schema: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        modes = [run_ids is not None, pending, since is not None or until is not None]
        if sum(modes) != 1:
            # Mapped over (expand), this runs in the worker: a KnitInputError fails the task without retries.
            raise KnitInputError(
                f"{self.__class__.__name__} {kwargs.get('task_id')!r}: pass exactly one of run_ids, "
                "pending=True, or since/until."
            )
        if (since is None) != (until is None):
            raise KnitInputError("since and until go together: pass both ends of the interval.")
        self.data_type = data_type
        self.run_ids = run_ids
        self.pending = pending
        self.since = since
        self.until = until
        self.integration_ids = integration_ids
        self.force = force
        self.skip_normalized = skip_normalized
        self.reconcile = reconcile
        self.landing_conn_id = landing_conn_id
        self.landing_schema = landing_schema
        self.target_schema = target_schema
        # The last result, kept for the OpenLineage counts (get_openlineage_facets_on_complete).
        self.summary: dict[str, Any] | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        from knit_provider.chaining import publish_changes
        from knit_provider.hooks.landing import KnitLandingHook
        from knit_provider.normalize.apply import normalize_runs
        from knit_provider.normalize.reconcile import ReconciliationError, check, reconcile_run
        from knit_provider.normalize.runs import pending_runs, runs_completed_between

        try:
            schemas = Schemas.from_env(landing=self.landing_schema, target=self.target_schema)
        except ValueError as exc:  # settings.py stays free of Airflow, so its refusal is a plain ValueError
            raise KnitInputError(str(exc)) from exc
        # Every input is read before connecting: a bad one fails the task without touching the database.
        try:
            get(self.data_type)
        except UnknownDataTypeError as exc:
            raise KnitInputError(str(exc)) from exc
        integrations = parse_list(self.integration_ids, "integration_ids") or None
        interval = None
        if self.since is not None and self.until is not None:
            interval = required_time(self.since, "since"), required_time(self.until, "until")
        chosen = [] if self.pending or interval is not None else parse_list(self.run_ids, "run_ids")
        conn = KnitLandingHook(self.landing_conn_id, application_name="knit-normalize").get_conn()
        try:
            if self.pending:
                run_ids = pending_runs(conn, schemas, integrations, self.data_type)
            elif interval is not None:
                run_ids = runs_completed_between(conn, schemas, *interval, integrations, self.data_type)
                self.log.info("%d run(s) completed in [%s, %s)", len(run_ids), *interval)
            else:
                run_ids = chosen
            if not run_ids:
                self.log.info("No run to normalize.")
            results = normalize_runs(
                conn, run_ids, schemas, force=self.force, only_if_pending=self.pending or self.skip_normalized
            )
            for result in results:
                self.log.info("Normalized %s", result.describe())
                if not result.skipped and result.data_type != self.data_type:
                    raise KnitInputError(
                        f"Run {result.sync_run_id} carries {result.data_type}, not {self.data_type}: pass it to the "
                        f"normalize task of {result.data_type} (its DAG {get(result.data_type).dag_id})."
                    )
            reconciliations = []
            if self.reconcile:
                for result in results:
                    if result.skipped or not result.complete:
                        continue
                    reconciliation = reconcile_run(conn, result.sync_run_id, schemas)
                    self.log.info("Reconciled %s", reconciliation.describe())
                    reconciliations.append(reconciliation)
            summary: dict[str, Any] = {
                "data_type": self.data_type,
                "runs": [r.as_dict() for r in results],
                "reconciliations": [r.as_dict() for r in reconciliations],
                "normalized": sum(1 for r in results if not r.skipped),
                "records_changed": sum(r.records_changed for r in results),
                "type_error_events": sum(r.type_error_events for r in results),
            }
            if get(self.data_type).earlier_names:
                summary["applications_changed"] = summary["records_changed"]
            # The event of the type's asset, when this task updates it (the on-delivery DAG), says what changed.
            publish_changes(
                context, self.outlets, [summary], landing_conn_id=self.landing_conn_id, schemas=schemas, conn=conn
            )
        finally:
            conn.close()
        self.summary = summary
        try:
            for reconciliation in reconciliations:
                check(reconciliation)
        except ReconciliationError as e:
            # Knit got a 200 for every event it counted: the loss is permanent, a retry cannot help.
            raise AirflowFailException(str(e)) from e
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage: the landing events and runs in, the normalized tables out, with the rows changed."""
        from knit_provider.lineage import normalize_lineage

        if self.summary is None:
            # Skipped before it ran (a backfill-only task in a normal run): it read and wrote nothing.
            return None
        return normalize_lineage(
            landing_conn_id=self.landing_conn_id,
            schemas=Schemas.from_env(landing=self.landing_schema, target=self.target_schema),
            spec=get(self.data_type),
            summary=self.summary,
        )
