"""Run-time logic of ``knit_integration_onboarding``: which announced integrations to sync, and the end of it.

An activation is announced by ``ActivationsTrigger`` (one asset event each; several may be merged into
one DAG run). The registry, not the announcement, decides: it holds the integration's newest
activation, whether the user disabled it, and whether an initial sync of it was started already.

* ``check_validation``: an announced integration whose newest activation carries validation errors
  fails the task with Knit's errors; nothing is started for it.
* ``plan_onboarding``: claims the announced integrations that are active, never onboarded and not
  being onboarded (``sql/landing/onboarding_claim.sql``); one ``initial_sync`` each. Knit starts that
  sync by itself when an integration connects (its Syncs guide), while its event glossary says to start
  it on the activation: so the group first waits, deferred, for a run of the integration to begin landing
  since the activation, and adopts it ("Knit started it"); only if none has begun within the grace period
  (``$KNIT_ONBOARDING_GRACE_SECONDS``, default 300) does it call ``sync.start`` ("started by Airflow after N
  min"). The claim is what keeps a second activation (a second DAG run, the onboarding DAG allows several
  at once) from following a second initial sync while one runs; the main DAG's "all active" mode leaves
  claimed integrations out too.
* ``finish_onboarding`` (runs whatever happened upstream): the integrations whose initial sync of every
  enabled data type was normalized and reconciled are marked onboarded; the other claims of the DAG run
  are released, so a later activation or the main DAG can try again. A claim whose DAG run died without this step
  expires after ``DAGRUN_TIMEOUT``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import Asset

from knit_provider.data_types import enabled
from knit_provider.exceptions import KnitInputError
from knit_provider.run_plans import DAGRUN_TIMEOUT, announced_ids, resolve_destination
from knit_provider.settings import (
    DEFAULT_KNIT_CONN_ID,
    DEFAULT_LANDING_CONN_ID,
    INITIAL_SYNC,
    ONBOARDING_ADOPT_MARGIN,
    Schemas,
)

log = logging.getLogger(__name__)

#: A claim older than this belongs to a DAG run that cannot still be running (it would have timed out).
CLAIM_STALE_AFTER = DAGRUN_TIMEOUT
#: How long onboarding waits for Knit's own initial sync to begin landing before it starts one.
GRACE_ENV = "KNIT_ONBOARDING_GRACE_SECONDS"
DEFAULT_GRACE_SECONDS = 300.0


def grace_seconds() -> float:
    """The grace period of ``$KNIT_ONBOARDING_GRACE_SECONDS`` (default 300), checked."""
    raw = os.environ.get(GRACE_ENV, "").strip()
    if not raw:
        return DEFAULT_GRACE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400:
        raise KnitInputError(
            f"${GRACE_ENV}={raw!r} is not a number of seconds from 0 to 86400: it is how long onboarding waits for "
            "Knit's own initial sync to begin before starting one (default 300)."
        )
    return value


def _in_transaction(landing_conn_id: str, work: Any) -> Any:
    from knit_provider.hooks.landing import KnitLandingHook

    with KnitLandingHook(landing_conn_id, application_name="knit_integration_onboarding").transaction() as cur:
        return work(cur)


def validation_failures(rows: Sequence[Any]) -> str | None:
    """The message of a failed validation for the registry rows given, or None when none failed."""
    from knit_provider.landing.integrations import FAILED_VALIDATION

    failed = [row for row in rows if row.state == FAILED_VALIDATION]
    if not failed:
        return None
    lines = [
        f"{row.integration_id}: {json.dumps(row.validation_errors, ensure_ascii=False)} "
        f"(activation {row.activation_event_id} at {row.activated_at.isoformat() if row.activated_at else '?'})"
        for row in failed
    ]
    return (
        f"Knit's validation failed for {len(failed)} integration(s); no sync was started for them. Knit's errors:\n"
        + "\n".join(lines)
        + "\nOnce the customer fixes the connection in Knit, Knit sends a new activation and it is onboarded then."
    )


def check_validation(
    context: Mapping[str, Any], asset: Asset, landing_conn_id: str = DEFAULT_LANDING_CONN_ID
) -> list[str]:
    """Fail (no retries) with Knit's errors if an announced integration's newest activation failed validation."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    from knit_provider.landing.integrations import list_integrations

    ids = announced_ids(context, asset, "integration_id")
    if not ids:
        return []
    rows = _in_transaction(landing_conn_id, lambda cur: list_integrations(cur, Schemas.from_env(), ids=ids))
    message = validation_failures(rows)
    if message:
        raise AirflowFailException(message)
    return ids


def plan_onboarding(
    context: Mapping[str, Any],
    asset: Asset,
    knit_conn_id: str = DEFAULT_KNIT_CONN_ID,
    landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
) -> list[dict[str, Any]]:
    """Claim the announced integrations that need their initial sync followed; one mapped group's arguments each."""
    from airflow.providers.common.compat.sdk import AirflowFailException
    from airflow.sdk import BaseHook

    from knit_provider.landing.integrations import claim_onboarding, list_integrations

    ids = announced_ids(context, asset, "integration_id")
    if not ids:
        log.info(
            "No activation announced (a manual run?): nothing to onboard. To sync by hand, trigger "
            "knit_ats_applications."
        )
        return []
    extra = BaseHook.get_connection(knit_conn_id).extra_dejson or {}
    try:
        # Before claiming: a claim must not be left behind by a configuration error.
        destination = resolve_destination("", extra)
        grace = grace_seconds()
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from exc
    schemas = Schemas.from_env()
    dag_run_id = str(context["dag_run"].run_id)
    margin = ONBOARDING_ADOPT_MARGIN.total_seconds()

    def claim(cur: Any) -> tuple[list[Any], list[Any]]:
        claimed = claim_onboarding(
            cur, schemas, ids, dag_run_id=dag_run_id, stale_after=CLAIM_STALE_AFTER.total_seconds(), adopt_margin=margin
        )
        rows = list_integrations(cur, schemas, ids=ids)
        return [r for r in rows if r.integration_id in claimed], [r for r in rows if r.integration_id not in claimed]

    claimed, passed = _in_transaction(landing_conn_id, claim)
    for row in passed:
        log.info("Integration %s: nothing to start (%s)", row.integration_id, _why_not(row, dag_run_id))
    specs = enabled()
    plan: list[dict[str, Any]] = []
    for row in claimed:
        since = (row.activated_at or datetime.now(timezone.utc)) - ONBOARDING_ADOPT_MARGIN
        log.info(
            "Integration %s: following the initial_sync of %s; waiting up to %.0fs for each run Knit starts by "
            "itself on connection (one that began landing since %s), else starting one",
            row.integration_id,
            ", ".join(spec.name for spec in specs),
            grace,
            since.isoformat(),
        )
        # One group per enabled data type: Knit starts the initial sync of each type it syncs.
        plan.extend(
            {
                "integration_id": row.integration_id,
                "data_type": spec.name,
                "models": list(spec.default_models),
                "sync_type": INITIAL_SYNC,
                "destination": destination,
                "adopt_since": since.isoformat(),
                "adopt_grace": grace,
            }
            for spec in specs
        )
    return plan


def _why_not(row: Any, dag_run_id: str) -> str:
    from knit_provider.landing.integrations import ACTIVE

    if row.state != ACTIVE:
        return f"state {row.state}"
    if row.onboarded_at is not None:
        return f"onboarded at {row.onboarded_at.isoformat()} by run {row.onboarding_sync_run_id}"
    if row.onboarding_claimed_at is not None and row.onboarding_dag_run_id != dag_run_id:
        return (
            f"its initial sync is running: DAG run {row.onboarding_dag_run_id} claimed it at "
            f"{row.onboarding_claimed_at.isoformat()}"
        )
    return (
        "it has an ats_applications run completed before its activation (synced without onboarding); the daily "
        "knit_ats_applications run keeps it in sync"
    )


def finish_onboarding(
    context: Mapping[str, Any], reconciled: Any, landing_conn_id: str = DEFAULT_LANDING_CONN_ID
) -> dict[str, list[str]]:
    """Mark onboarded the integrations whose runs of every enabled type reconciled; release the other claims.

    ``reconciled`` is what the group's ``reconcile`` tasks returned: each a list of reconciliations, for the
    integrations that got that far. Pulled from all map indexes it arrives as a list of those lists, or as
    the one list when one task returned, so any nesting is read.
    """
    from knit_provider.landing.integrations import finish_onboarding as finish

    run_ids = sorted(_run_ids(reconciled))
    dag_run_id = str(context["dag_run"].run_id)
    outcome: dict[str, list[str]] = _in_transaction(
        landing_conn_id,
        lambda cur: finish(
            cur,
            Schemas.from_env(),
            dag_run_id=dag_run_id,
            sync_run_ids=run_ids,
            data_types=[spec.name for spec in enabled()],
        ),
    )
    log.info(
        "Onboarded: %s; claims released (initial sync not reconciled): %s",
        ", ".join(outcome["onboarded"]) or "none",
        ", ".join(outcome["released"]) or "none",
    )
    return outcome


def _run_ids(value: Any) -> set[str]:
    if isinstance(value, Mapping):
        return {str(value["sync_run_id"])} if value.get("sync_run_id") else set()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return set().union(*(_run_ids(item) for item in value))
    return set()
