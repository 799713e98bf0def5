"""NormalizeRunsOperator: turn completed runs' landed events into the normalized tables, then reconcile."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from knit_provider.settings import DEFAULT_LANDING_CONN_ID, Schemas

if TYPE_CHECKING:
    from airflow.sdk import Context


def run_id_list(run_ids: str | Sequence[Any] | None) -> list[str]:
    """Accept what a rendered template or an XCom gives: a list, one id, or the text of a list.

    Empty entries (a ``None`` run id rendered as ``""`` or ``"None"``) are dropped, duplicates too.
    """
    if run_ids is None:
        return []
    if isinstance(run_ids, str):
        text = run_ids.strip()
        if text.startswith("["):
            try:
                return run_id_list(ast.literal_eval(text))
            except (ValueError, SyntaxError) as e:
                raise ValueError(f"run_ids {run_ids!r} looks like a list but cannot be read.") from e
        run_ids = [text]
    ids = [str(r).strip() for r in run_ids if r is not None]
    return list(dict.fromkeys(r for r in ids if r and r != "None"))


def as_datetime(value: str | datetime, name: str) -> datetime:
    """A rendered ``{{ data_interval_start }}`` is a string unless the DAG renders native objects."""
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError as e:
            raise ValueError(f"{name}={value!r} is not an ISO-8601 time.") from e
    if parsed.tzinfo is None:
        raise ValueError(
            f"{name}={value!r} has no time zone; pass an aware time such as '{{{{ data_interval_start }}}}'."
        )
    return parsed


class NormalizeRunsOperator(BaseOperator):
    """Normalize completed Knit runs into the ``knit`` tables, then check nothing is missing.

    Choose the runs one way: ``run_ids`` (e.g. the sensor's ``sync_run_id``), ``pending=True``
    (every completed run not normalized yet, oldest first), or ``since``/``until`` (runs whose
    allConsumed landed in that interval: what a backfill re-normalizes). Each run is normalized in
    its own transaction; normalization is idempotent and order-independent, so retries and
    overlapping backfills are safe. Afterwards each complete run is reconciled: fewer distinct
    record events landed than Knit emitted fails the task, without retries, with both numbers.

    Returns (XCom) ``{"runs": [...per-run results...], "reconciliations": [...], "normalized": n,
    "applications_changed": n, "type_error_events": n}``.

    :param run_ids: sync run ids (templated; a list, one id, or an XComArg).
    :param pending: normalize every completed, not yet normalized run instead.
    :param since: start of the completion interval, inclusive (templated, aware ISO time).
    :param until: end of the completion interval, exclusive (templated).
    :param integration_ids: limit ``pending`` / interval selection to these integrations (templated).
    :param force: also normalize runs whose allConsumed has not landed (they stay pending).
    :param reconcile: reconcile each normalized complete run against Knit's counts (default True).
    :param landing_conn_id: Postgres connection of the landing store and normalized tables.
    :param landing_schema: landing schema (default ``$KNIT_LANDING_SCHEMA`` or ``knit_landing``).
    :param target_schema: normalized schema (default ``$KNIT_SCHEMA`` or ``knit``).
    """

    template_fields: Sequence[str] = ("run_ids", "since", "until", "integration_ids")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        run_ids: str | Sequence[str] | None = None,
        pending: bool = False,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        integration_ids: str | Sequence[str] | None = None,
        force: bool = False,
        reconcile: bool = True,
        landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
        landing_schema: str | None = None,
        target_schema: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        modes = [run_ids is not None, pending, since is not None or until is not None]
        if sum(modes) != 1:
            raise ValueError(
                f"{self.__class__.__name__} {kwargs.get('task_id')!r}: pass exactly one of run_ids, "
                "pending=True, or since/until."
            )
        if (since is None) != (until is None):
            raise ValueError("since and until go together: pass both ends of the interval.")
        self.run_ids = run_ids
        self.pending = pending
        self.since = since
        self.until = until
        self.integration_ids = integration_ids
        self.force = force
        self.reconcile = reconcile
        self.landing_conn_id = landing_conn_id
        self.landing_schema = landing_schema
        self.target_schema = target_schema

    def execute(self, context: Context) -> dict[str, Any]:
        from knit_provider.hooks.landing import KnitLandingHook
        from knit_provider.normalize.apply import normalize_runs
        from knit_provider.normalize.reconcile import ReconciliationError, check, reconcile_run
        from knit_provider.normalize.runs import pending_runs, runs_completed_between

        schemas = Schemas.from_env(landing=self.landing_schema, target=self.target_schema)
        integrations = run_id_list(self.integration_ids) or None
        conn = KnitLandingHook(self.landing_conn_id, application_name="knit-normalize").get_conn()
        try:
            if self.pending:
                run_ids = pending_runs(conn, schemas, integrations)
            elif self.since is not None and self.until is not None:
                since, until = as_datetime(self.since, "since"), as_datetime(self.until, "until")
                run_ids = runs_completed_between(conn, schemas, since, until, integrations)
                self.log.info("%d run(s) completed in [%s, %s)", len(run_ids), since, until)
            else:
                run_ids = run_id_list(self.run_ids)
            if not run_ids:
                self.log.info("No run to normalize.")
            results = normalize_runs(conn, run_ids, schemas, force=self.force, only_if_pending=self.pending)
            for result in results:
                self.log.info("Normalized %s", result.describe())
            reconciliations = []
            if self.reconcile:
                for result in results:
                    if result.skipped or not result.complete:
                        continue
                    reconciliation = reconcile_run(conn, result.sync_run_id, schemas)
                    self.log.info("Reconciled %s", reconciliation.describe())
                    reconciliations.append(reconciliation)
        finally:
            conn.close()
        summary = {
            "runs": [r.as_dict() for r in results],
            "reconciliations": [r.as_dict() for r in reconciliations],
            "normalized": sum(1 for r in results if not r.skipped),
            "applications_changed": sum(r.applications_changed for r in results),
            "type_error_events": sum(r.type_error_events for r in results),
        }
        try:
            for reconciliation in reconciliations:
                check(reconciliation)
        except ReconciliationError as e:
            # Knit got a 200 for every event it counted: the loss is permanent, a retry cannot help.
            raise AirflowFailException(str(e)) from e
        return summary
