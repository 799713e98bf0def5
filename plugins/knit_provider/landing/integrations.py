"""The integration registry (``knit_landing.integrations``): read it, steer it, claim its work.

``land_events`` keeps the registry as events land (``sql/landing/0004_integrations.sql``); everything
here only reads it or changes what the user and the DAGs own: ``disabled_at`` (the CLI), the onboarding
watcher's announcements, the onboarding DAG's claims. The SQL is in ``sql/landing/*.sql``, written once
with ``%(name)s`` placeholders for psycopg2 and converted for asyncpg, like the run look-ups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from knit_provider.landing.runs import to_asyncpg
from knit_provider.settings import ATS_APPLICATIONS, ONBOARDING_ADOPT_MARGIN, Schemas
from knit_provider.sql import load_sql

#: The registry's states (``integrations.state``, derived by the database; see 0004_integrations.sql).
ACTIVE = "active"
FAILED_VALIDATION = "failed_validation"
SEEN_ONLY_THROUGH_SYNCS = "seen_only_through_syncs"
DISABLED = "disabled"
STATES = (ACTIVE, FAILED_VALIDATION, SEEN_ONLY_THROUGH_SYNCS, DISABLED)


class IntegrationNotFoundError(LookupError):
    """An integration id the registry does not hold."""


@dataclass(frozen=True)
class Integration:
    """One row of the registry."""

    integration_id: str
    state: str
    first_seen_at: datetime
    last_event_at: datetime
    last_event_type: str | None
    activated_at: datetime | None
    activation_event_id: str | None
    validation_errors: Any
    last_sync_run_id: str | None
    last_sync_run_at: datetime | None
    disabled_at: datetime | None
    announced_at: datetime | None
    onboarding_claimed_at: datetime | None
    onboarding_dag_run_id: str | None
    onboarded_at: datetime | None
    onboarding_sync_run_id: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Integration:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (times as ISO strings) for XCom, the CLI's ``--json`` and the UI."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in ((name, getattr(self, name)) for name in self.__dataclass_fields__)
        }


def _rows(cur: Any) -> list[dict[str, Any]]:
    names = [column[0] for column in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def list_integrations(
    cur: Any, schemas: Schemas, *, states: Sequence[str] | None = None, ids: Sequence[str] | None = None
) -> list[Integration]:
    """The registry's rows (all, or those in ``states`` / with ``ids``), by integration id, over psycopg2."""
    unknown = sorted(set(states or ()) - set(STATES))
    if unknown:
        raise ValueError(f"unknown state(s) {', '.join(unknown)}: use {', '.join(STATES)}")
    cur.execute(
        load_sql("landing/integrations_list.sql", schemas),
        {"states": list(states) if states else None, "ids": list(ids) if ids is not None else None},
    )
    return [Integration.from_row(row) for row in _rows(cur)]


def set_disabled(cur: Any, schemas: Schemas, ids: Sequence[str], *, disabled: bool) -> list[Integration]:
    """Disable (or enable) integrations; all or none: an id the registry does not hold changes nothing.

    Raises ``IntegrationNotFoundError`` naming the unknown ids (the caller's transaction is then rolled back).
    """
    wanted = list(dict.fromkeys(ids))
    cur.execute(load_sql("landing/integrations_set_disabled.sql", schemas), {"disabled": disabled, "ids": wanted})
    changed = {row[0] for row in cur.fetchall()}
    missing = [i for i in wanted if i not in changed]
    if missing:
        raise IntegrationNotFoundError(
            f"no integration {', '.join(repr(i) for i in missing)} in {schemas.landing}.integrations: an "
            "integration appears there once one of its events landed (see `integrations list`)"
        )
    return list_integrations(cur, schemas, ids=wanted)


def active_integration_ids(cur: Any, schemas: Schemas, *, stale_after: float) -> list[str]:
    """The integrations to sync in "all active" mode (``active`` and ``seen_only_through_syncs``), except those
    an onboarding DAG run is syncing (claims younger than ``stale_after``)."""
    cur.execute(load_sql("landing/active_integrations.sql", schemas), {"stale_after": stale_after})
    return [row[0] for row in cur.fetchall()]


def claim_onboarding(
    cur: Any,
    schemas: Schemas,
    ids: Sequence[str],
    *,
    dag_run_id: str,
    stale_after: float,
    adopt_margin: float = ONBOARDING_ADOPT_MARGIN.total_seconds(),
    data_type: str = ATS_APPLICATIONS,
) -> list[str]:
    """Claim, for one onboarding DAG run, the integrations among ``ids`` whose initial sync it follows.

    Not those with a ``data_type`` run that completed and began landing more than ``adopt_margin`` seconds
    before the activation: they were synced without onboarding. A run since then is the initial sync Knit
    starts by itself on connection, which onboarding adopts.
    """
    cur.execute(
        load_sql("landing/onboarding_claim.sql", schemas),
        {
            "ids": list(ids),
            "dag_run_id": dag_run_id,
            "stale_after": stale_after,
            "adopt_margin": adopt_margin,
            "data_type": data_type,
        },
    )
    return sorted(row[0] for row in cur.fetchall())


def finish_onboarding(
    cur: Any,
    schemas: Schemas,
    *,
    dag_run_id: str,
    sync_run_ids: Sequence[str],
    data_types: Sequence[str] = (ATS_APPLICATIONS,),
) -> dict[str, list[str]]:
    """Mark onboarded the integrations claimed by ``dag_run_id`` whose ``sync_run_ids`` (the reconciled
    initial syncs) cover every one of ``data_types``; release its other claims."""
    cur.execute(
        load_sql("landing/onboarding_finish.sql", schemas),
        {"dag_run_id": dag_run_id, "sync_run_ids": list(sync_run_ids), "data_types": list(data_types)},
    )
    outcome: dict[str, list[str]] = {"onboarded": [], "released": []}
    for kind, integration_id in cur.fetchall():
        outcome[kind].append(integration_id)
    return outcome


async def aclaim_activations(conn: Any, schemas: Schemas, limit: int = 1) -> list[dict[str, Any]]:
    """Mark up to ``limit`` unannounced activations as announced; return them, oldest first (asyncpg)."""
    query, args = to_asyncpg(load_sql("landing/claim_activations.sql", schemas), {"batch_size": limit})
    rows = await conn.fetch(query, *args)
    return sorted((dict(row) for row in rows), key=lambda row: (row["activated_at"], row["integration_id"]))
