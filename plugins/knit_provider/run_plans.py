"""Params, run-time planning and defaults shared by the Knit DAGs in ``dags/`` (built by ``dag_factory``).

The DAG files stay declarations; what they decide at run time (which integrations, initial or
delta, where Knit delivers, whether this is a backfill) lives here, importable and tested
without parsing a DAG. Nothing in this module touches a connection or a database at import.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, Param

from knit_provider.data_types import DataTypeSpec, get
from knit_provider.exceptions import KnitInputError
from knit_provider.inputs import optional_text, parse_list
from knit_provider.settings import (
    ATS_APPLICATIONS,
    DEFAULT_KNIT_CONN_ID,
    DEFAULT_LANDING_CONN_ID,
    DELTA_SYNC,
    INITIAL_SYNC,
    Schemas,
    quote_ident,
)

log = logging.getLogger(__name__)


def asset_for(spec: DataTypeSpec) -> Asset:
    """What downstream DAGs schedule on: the normalized tables of one data type changed."""
    return Asset(name=spec.asset_name, uri=spec.asset_uri, group="knit")


def tags_for(spec: DataTypeSpec) -> list[str]:
    """``knit`` and the words of the type's name: ``ats``, ``applications``."""
    return ["knit", *spec.name.split("_")]


#: The applications' asset, as downstream DAGs of earlier releases import it.
APPLICATIONS_ASSET = asset_for(get(ATS_APPLICATIONS))
TAGS = tags_for(get(ATS_APPLICATIONS))

#: Knit's documented frequencies (``standard`` is its default); others are unconfirmed.
FREQUENCIES = ("standard", "medium", "high")

#: Who starts Knit's runs (README, "Running beside Knit's scheduler"): ``airflow`` calls ``sync.start`` on the
#: DAG's schedule; ``knit`` leaves runs to Knit's own scheduler, and the DAGs only normalize, reconcile and publish.
AIRFLOW_SCHEDULES = "airflow"
KNIT_SCHEDULES = "knit"
SCHEDULING_MODES = (AIRFLOW_SCHEDULES, KNIT_SCHEDULES)
#: The deployment's default for the ``scheduling`` param (a setting, so switching needs no DAG edit).
SCHEDULING_ENV = "KNIT_SCHEDULING"

#: Where the webhook URL may be set, in the order it is looked for (see ``resolve_destination``).
WEBHOOK_URL_ENV = "KNIT_WEBHOOK_URL"
WEBHOOK_URL_EXTRA = "webhook_url"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    # Doubling delays. True, not the multiplier 2.0 that Airflow 3.2 introduced: Airflow 3.1 takes
    # only a bool here, and 3.2 and later read True from a serialized DAG as 2.0.
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=1),
}

#: How long a run may take from ``sync.start`` to ``allConsumed`` before the wait gives up.
WAIT_TIMEOUT = timedelta(hours=6)
DAGRUN_TIMEOUT = timedelta(hours=12)

#: Mapped over hundreds of integrations, a DAG run would call ``sync.start`` for all of them at
#: once; at most this many start at a time in one DAG run (``max_active_tis_per_dagrun``). The
#: waits that follow cost no slot and no connection each (the triggers share one).
START_SYNC_CONCURRENCY = 16
#: Task retries of ``start_sync``: safe, as a retry never starts a second run (StartSyncOperator).
START_SYNC_RETRIES = 3
#: Normalize and reconcile tasks of one DAG run at a time: each holds one landing-database
#: connection while it runs, so this bounds what a DAG run takes from ``max_connections``.
LANDING_TASK_CONCURRENCY = 8


#: Airflow's form shows an option's label by its JSON value, so the empty choice (None) is labelled "null".
FREQUENCY_LABELS = {
    "null": "as set in Knit (not sent)",
    "standard": "standard (Knit's default)",
    "medium": "medium",
    "high": "high",
}
SCHEDULING_LABELS = {
    "null": f"as configured (${SCHEDULING_ENV}, else airflow)",
    AIRFLOW_SCHEDULES: "Airflow schedules: sync.start on this DAG's schedule",
    KNIT_SCHEDULES: "Knit schedules, Airflow normalizes: no sync.start",
}
#: The trigger form's collapsed sections: rarely changed, and empty means "as configured".
DELIVERY_SECTION = "Delivery (optional: empty uses the webhook configured in Knit)"
KNIT_SYNC_SECTION = "Knit's sync settings (optional: empty leaves Knit's own)"


def sync_params(spec: DataTypeSpec) -> dict[str, Param]:
    """The trigger form of a data type's scheduled DAG; the schema is checked when a run is created.

    Airflow's form marks a typed field as required unless its type allows ``null``, and an empty
    field is submitted as ``None``: the optional params are nullable with ``None`` as default, so
    the form can be submitted as it opens, and the run-time checks read ``None`` as "not set".
    """
    return {
        "integration_ids": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "minLength": 1, "pattern": r"\S"},
            uniqueItems=True,
            title="Integration ids",
            description="Knit integration ids to sync, one per line; each gets its own mapped task group. "
            "Empty: every active integration of the registry (knit_landing.integrations), or, while it has "
            f"none, the integration_id extra of the {DEFAULT_KNIT_CONN_ID} connection.",
        ),
        "all_active": Param(
            False,
            type="boolean",
            title="Every active integration",
            description="Sync each active integration of the registry: activated by Knit without validation "
            "errors, or known from its syncs, and not disabled. Fail if there is none instead of falling back to "
            f"the {DEFAULT_KNIT_CONN_ID} connection. Leave integration ids empty. "
            "See `python -m knit_provider integrations list`.",
        ),
        "models": Param(
            list(spec.default_models),
            type="array",
            items={"type": "string", "enum": list(spec.model_ids)},
            # `examples` is what makes Airflow's form render a multi-select instead of a text area.
            examples=list(spec.model_ids),
            values_display={m.id: m.label for m in spec.models},
            minItems=1,
            uniqueItems=True,
            title="Models",
            description=f"{spec.title} data models Knit sends (at least one).",
        ),
        "scheduling": Param(
            None,
            type=["null", "string"],
            enum=[None, *SCHEDULING_MODES],
            values_display=SCHEDULING_LABELS,
            title="Who starts Knit's runs",
            description=f"airflow: call sync.start for each integration, wait and normalize. knit: call nothing; "
            "Knit's own scheduler runs the syncs, and this run normalizes, reconciles and publishes the completed "
            f"runs not normalized yet. Empty: ${SCHEDULING_ENV}, else airflow.",
        ),
        "honor_scheduler": Param(
            True,
            type="boolean",
            title="Keep Knit's schedule",
            description="Send honorScheduler: true, so a run started from Airflow leaves the next run of Knit's "
            "own schedule where the customer set it (Knit's default, false, moves it).",
        ),
        "frequency": Param(
            None,
            type=["null", "string"],
            enum=[None, *FREQUENCIES],
            values_display=FREQUENCY_LABELS,
            title="Frequency",
            section=KNIT_SYNC_SECTION,
            description="Sent to Knit only when set (the applications page's shape; Knit's reference of "
            "sync.start does not list it): how often Knit runs the sync on its own schedule.",
        ),
        "include_inactive_records": Param(
            None,
            type=["null", "boolean"],
            title="Include inactive records",
            section=KNIT_SYNC_SECTION,
            description=f"Knit's includeInactiveRecords: an initial sync also sends the {spec.records} marked "
            "inactive in the ATS. Empty: Knit's default (active ones only).",
        ),
        "start_hour": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            maximum=23,
            title="Daily start hour (UTC)",
            section=KNIT_SYNC_SECTION,
            description="Knit's startHour: the UTC hour of the job's daily run. Empty: Knit's.",
        ),
        "start_minute": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            maximum=59,
            title="Daily start minute (UTC)",
            section=KNIT_SYNC_SECTION,
            description="Knit's startMinute, with the start hour. Empty: Knit's.",
        ),
        "full_resync": Param(
            False,
            type="boolean",
            title="Full resync",
            description=f"Ask Knit for an initial_sync (every {spec.record} again) "
            "instead of a delta of the changes since the last run.",
        ),
        "destination": Param(
            None,
            type=["null", "string"],
            pattern=r"^(https?://\S+)?$",
            title="Webhook URL",
            section=DELIVERY_SECTION,
            description="Sent to Knit as destination only when set here, in "
            f"${WEBHOOK_URL_ENV} or in the {WEBHOOK_URL_EXTRA} extra of the {DEFAULT_KNIT_CONN_ID} connection. "
            "Empty everywhere: Knit delivers to the webhook configured for the ATS category in its dashboard.",
        ),
    }


def validate_sync_params(params: Mapping[str, Any], spec: DataTypeSpec | None = None) -> dict[str, Any]:
    """Check the run's params and return them cleaned; raise ``KnitInputError`` naming the param to fix.

    Airflow checks the JSON schema when a run is created from the UI or API; this repeats the
    checks at run time with messages that name the param, because ``airflow dags test`` and
    programmatic triggers can skip the form. Lists are read as every task reads them
    (:func:`knit_provider.inputs.parse_list`: blanks and duplicates dropped).
    """
    ids = parse_list(params.get("integration_ids"), "param integration_ids")
    all_active = params.get("all_active") or False
    if not isinstance(all_active, bool):
        raise KnitInputError(f"param all_active must be true or false, got {all_active!r}.")
    if all_active and ids:
        raise KnitInputError(
            f"param all_active syncs every active integration of the registry, so integration_ids must be empty "
            f"(got {ids!r}): clear one of the two."
        )
    spec = spec or get(ATS_APPLICATIONS)
    models = parse_list(params.get("models"), "param models")
    if not models:
        raise KnitInputError(
            f"param models must name at least one model id, got {params.get('models')!r}; "
            f"valid ids: {', '.join(spec.model_ids)}."
        )
    unknown = spec.unknown_models(models)
    if unknown:
        raise KnitInputError(
            f"param models has unknown model ids {unknown!r}; valid ids of {spec.name}: {', '.join(spec.model_ids)}."
        )
    frequency = params.get("frequency")
    if frequency is not None and frequency not in FREQUENCIES:
        raise KnitInputError(f"param frequency must be empty or one of {', '.join(FREQUENCIES)}, got {frequency!r}.")
    full_resync = _flag(params, "full_resync", False)
    honor_scheduler = _flag(params, "honor_scheduler", True)
    include_inactive = params.get("include_inactive_records")
    if include_inactive is not None and not isinstance(include_inactive, bool):
        raise KnitInputError(f"param include_inactive_records must be empty, true or false, got {include_inactive!r}.")
    start_hour = _bounded(params, "start_hour", 23)
    start_minute = _bounded(params, "start_minute", 59)
    if start_minute is not None and start_hour is None:
        raise KnitInputError(f"param start_minute ({start_minute}) needs start_hour: set both, or clear it.")
    destination = params.get("destination")
    if destination is not None and not isinstance(destination, str):
        raise KnitInputError(f"param destination must be a URL string, got {destination!r}.")
    return {
        "integration_ids": ids,
        "all_active": all_active,
        "models": models,
        "scheduling": resolve_scheduling(params.get("scheduling")),
        "honor_scheduler": honor_scheduler,
        "frequency": frequency,
        "include_inactive_records": include_inactive,
        "start_hour": start_hour,
        "start_minute": start_minute,
        "full_resync": full_resync,
        "destination": optional_text(destination) or "",
    }


def _flag(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise KnitInputError(f"param {name} must be true or false, got {value!r}.")
    return value


def _bounded(params: Mapping[str, Any], name: str, top: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise KnitInputError(f"param {name} must be empty or a whole number from 0 to {top}, got {value!r}.")
    return value


def resolve_scheduling(param: Any) -> str:
    """Who starts Knit's runs: the param, else ``$KNIT_SCHEDULING``, else ``airflow``."""
    if param is not None and param not in SCHEDULING_MODES:
        raise KnitInputError(f"param scheduling must be empty or one of {', '.join(SCHEDULING_MODES)}, got {param!r}.")
    chosen = param or os.environ.get(SCHEDULING_ENV, "").strip() or AIRFLOW_SCHEDULES
    if chosen not in SCHEDULING_MODES:
        raise KnitInputError(
            f"${SCHEDULING_ENV}={chosen!r} is not a scheduling mode: set it to {' or '.join(SCHEDULING_MODES)} "
            '(README, "Running beside Knit\'s scheduler").'
        )
    return chosen


def resolve_integrations(
    ids: Sequence[str],
    knit_extra: Mapping[str, Any],
    active: Sequence[str] = (),
    held_back: Collection[str] = (),
    *,
    all_active: bool = False,
) -> list[str]:
    """The integrations to sync: the param's, else the registry's ``active`` ones, else the connection's default.

    Never empty. With ``all_active`` the registry's active integrations are asked for explicitly, so an empty
    registry is an error rather than a fall-back to the connection. The connection's default is not synced
    when the registry holds it back (``held_back``: disabled by the user, or its validation failed).
    """
    if ids:
        return list(ids)
    if active or all_active:
        if not active:
            raise KnitInputError(
                "No integration to sync: param all_active asks for every active integration of the registry, "
                "and it has none (or each is being onboarded right now). See `python -m knit_provider "
                "integrations list`, or trigger with integration_ids."
            )
        return list(active)
    default = optional_text(knit_extra.get("integration_id"))
    if not default:
        raise KnitInputError(
            "No integration to sync: param integration_ids is empty, the integration registry has no active "
            f"integration, and the {DEFAULT_KNIT_CONN_ID} connection has no integration_id extra. Trigger with "
            '{"integration_ids": ["<id>"]} or set the extra.'
        )
    if default in held_back:
        raise KnitInputError(
            f"No integration to sync: the registry has no active integration, and the {DEFAULT_KNIT_CONN_ID} "
            f"connection's integration_id {default!r} is disabled or failed Knit's validation (see `python -m "
            "knit_provider integrations list`). Enable it, trigger with integration_ids, or pause this DAG."
        )
    return [default]


def resolve_destination(param: str, knit_extra: Mapping[str, Any]) -> str:
    """The ``destination`` to send with ``sync.start``: the param, else ``$KNIT_WEBHOOK_URL``, else the
    connection extra, else "" (send none: Knit delivers to the webhook configured for the data category)."""
    url = param or os.environ.get(WEBHOOK_URL_ENV, "").strip() or str(knit_extra.get(WEBHOOK_URL_EXTRA) or "")
    if url and not url.startswith(("https://", "http://")):
        raise KnitInputError(f"The webhook URL {url!r} must start with https:// (or http:// for local tests).")
    return url


def integrations_with_completed_run(
    conn: Any, integration_ids: Sequence[str], schemas: Schemas | None = None, data_type: str = ATS_APPLICATIONS
) -> set[str]:
    """Integrations whose landing store holds a completed run of ``data_type`` (psycopg2 ``conn``)."""
    landing = quote_ident((schemas or Schemas.from_env()).landing)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT DISTINCT integration_id FROM {landing}.sync_runs "
            "WHERE integration_id = ANY(%s) AND sync_data_type = %s AND complete_at IS NOT NULL",
            (list(integration_ids), data_type),
        )
        return {row[0] for row in cur.fetchall()}


def plan_syncs(
    integration_ids: Sequence[str],
    *,
    full_resync: bool,
    completed: set[str],
    destination: str,
    spec: DataTypeSpec | None = None,
    models: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One mapped group's arguments per integration: initial sync until one has completed, then deltas.

    ``adopt_since`` and ``adopt_grace`` are for onboarding (``onboarding.plan_onboarding``): this DAG always
    calls ``sync.start``.
    """
    spec = spec or get(ATS_APPLICATIONS)
    plan = []
    for integration_id in integration_ids:
        initial = full_resync or integration_id not in completed
        plan.append(
            {
                "integration_id": integration_id,
                "data_type": spec.name,
                "models": list(models or spec.default_models),
                "sync_type": INITIAL_SYNC if initial else DELTA_SYNC,
                "destination": destination,
                "adopt_since": None,
                "adopt_grace": None,
            }
        )
    return plan


def registry_integrations(cur: Any) -> tuple[list[str], set[str]]:
    """The registry's active integrations, less those the onboarding DAG is syncing now (its claim decides),
    and the ones it holds back (disabled, or failed validation); over a psycopg2 cursor."""
    from knit_provider.landing.integrations import (
        DISABLED,
        FAILED_VALIDATION,
        active_integration_ids,
        list_integrations,
    )

    schemas = Schemas.from_env()
    active = active_integration_ids(cur, schemas, stale_after=DAGRUN_TIMEOUT.total_seconds())
    held_back = {i.integration_id for i in list_integrations(cur, schemas, states=[DISABLED, FAILED_VALIDATION])}
    return active, held_back


def is_backfill(context: Mapping[str, Any]) -> bool:
    """True for runs created by ``airflow backfill create`` (or the UI's backfill)."""
    dag_run = context["dag_run"]
    return str(getattr(dag_run.run_type, "value", dag_run.run_type)) == "backfill"


def plan_run(
    context: Mapping[str, Any],
    knit_conn_id: str = DEFAULT_KNIT_CONN_ID,
    landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
    spec: DataTypeSpec | None = None,
) -> list[dict[str, Any]]:
    """Validate the params and decide what each integration's group does; [] for a backfill, and when Knit
    schedules the runs (``normalize_completed`` does this run's work then)."""
    # A bad param raises KnitInputError, an AirflowFailException: retrying cannot help.
    spec = spec or get(ATS_APPLICATIONS)
    params = validate_sync_params(context["params"], spec)
    if is_backfill(context):
        log.info(
            "Backfill run for %s to %s: not calling Knit; the completed runs that landed in this "
            "interval are normalized again instead.",
            context.get("data_interval_start"),
            context.get("data_interval_end"),
        )
        return []
    if params["scheduling"] == KNIT_SCHEDULES:
        log.info(
            "Knit schedules the runs (scheduling=knit): no sync.start; the completed runs not normalized yet are "
            "normalized, reconciled and published by normalize_completed."
        )
        return []
    from airflow.sdk import BaseHook

    from knit_provider.hooks.landing import KnitLandingHook

    extra = BaseHook.get_connection(knit_conn_id).extra_dejson or {}
    # One connection for the registry and the completed runs.
    with KnitLandingHook(landing_conn_id, application_name="knit-plan-syncs").transaction() as cur:
        active, held_back = ([], set()) if params["integration_ids"] else registry_integrations(cur)
        integrations = resolve_integrations(
            params["integration_ids"], extra, active, held_back, all_active=params["all_active"]
        )
        completed = integrations_with_completed_run(cur.connection, integrations, data_type=spec.name)
    destination = resolve_destination(params["destination"], extra)
    plan = plan_syncs(
        integrations,
        full_resync=params["full_resync"],
        completed=completed,
        destination=destination,
        spec=spec,
        models=params["models"],
    )
    where = destination or "the webhook configured in Knit"
    for item in plan:
        log.info("Integration %s: %s %s, delivered to %s", item["integration_id"], spec.name, item["sync_type"], where)
    return plan


def skip_unless_backfill(context: Mapping[str, Any]) -> None:
    """A ``pre_execute`` hook: the task runs only in backfill runs."""
    from airflow.providers.common.compat.sdk import AirflowSkipException

    if not is_backfill(context):
        raise AirflowSkipException("Not a backfill run: the sync groups did the work.")


def skip_unless_knit_schedules(context: Mapping[str, Any]) -> None:
    """A ``pre_execute`` hook: the task runs only in scheduled or manual runs whose params say Knit schedules."""
    from airflow.providers.common.compat.sdk import AirflowSkipException

    if is_backfill(context):
        raise AirflowSkipException("A backfill run: normalize_backfill_interval does the work.")
    mode = resolve_scheduling(context["params"].get("scheduling"))
    if mode != KNIT_SCHEDULES:
        raise AirflowSkipException(f"scheduling={mode}: the sync groups start, wait for and normalize their runs.")


def announced_ids(context: Mapping[str, Any], asset: Asset, key: str) -> list[str]:
    """The ``key`` of each asset-watcher event that triggered this DAG run (``sync_run_id``,
    ``integration_id``), oldest first, unique.

    Events that arrive while a run is queued are merged into one DAG run, so there may be several.
    """
    ids: list[str] = []
    for event in context["triggering_asset_events"][asset]:
        value = ((event.extra or {}).get("payload") or {}).get(key)
        if value and value not in ids:
            ids.append(value)
    log.info("%s announced by the asset watcher: %s", key, ", ".join(ids) or "none")
    return ids


def reconcile_runs(run_ids: Sequence[str], landing_conn_id: str = DEFAULT_LANDING_CONN_ID) -> list[dict[str, Any]]:
    """Check that every record event Knit emitted for each run landed; fail at once with the numbers.

    A shortfall cannot be fixed by retrying (Knit got its 200s), so it fails without retries.
    """
    from airflow.providers.common.compat.sdk import AirflowFailException

    from knit_provider.hooks.landing import KnitLandingHook
    from knit_provider.normalize.reconcile import ReconciliationError, check, reconcile_run

    schemas = Schemas.from_env()
    conn = KnitLandingHook(landing_conn_id, application_name="knit-reconcile").get_conn()
    try:
        results = []
        for run_id in run_ids:
            try:
                reconciliation = check(reconcile_run(conn, run_id, schemas))
            except ReconciliationError as exc:
                raise AirflowFailException(str(exc)) from exc
            log.info("Reconciled %s", reconciliation.describe())
            results.append(reconciliation.as_dict())
    finally:
        conn.close()
    return results
