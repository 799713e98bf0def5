"""When a normalized ``initial_sync`` run may delete the records (applications, jobs, ...) it did not contain.

Knit's initial sync sends every active record and nothing else, so a complete one is a snapshot:
a record of the integration whose latest event is older than the run and alive was not in
it, and is soft-deleted as of the run (``sql/normalize/snapshot_apply.sql``). Deleting on absence
is only safe when absence means something, so a run qualifies only when:

* it is complete (a forced normalization of an incomplete run is partial by definition);
* it reconciles: every record event Knit emitted for it landed (as ``reconcile.Reconciliation``
  counts them), and Knit reported counts at all;
* none of its bodies waits in the dead letters (an authentic event that could not be landed);
* each of its record events names its record (one that does not could be any of them);
* it carries every model the integration's earlier normalized runs carried: a sync of fewer models
  may leave out records that have no data in those (Knit does not say it does not).

The last rule depends on the other runs of the integration, and an earlier run can be normalized
after the snapshot: then the snapshot is withdrawn (``snapshot_withdraw.sql``), so the tables
depend only on which runs were normalized, never on the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knit_provider.data_types import DataTypeSpec
from knit_provider.landing.dead_letters import DeadLettersUnreadableError, dead_letters_for_run
from knit_provider.normalize.reconcile import Reconciliation
from knit_provider.normalize.runs import LandedRun
from knit_provider.settings import Schemas, quote_ident

APPLIED = "applied"
SKIPPED = "skipped"


def _earlier_models(cur: Any, schemas: Schemas, spec: DataTypeSpec, run: LandedRun) -> set[str]:
    """Models carried by the integration's runs of this type normalized into this schema, older than ``run``.

    A run normalized before models were recorded counts as carrying all of them: unknown is not less.
    """
    cur.execute(
        f"SELECT DISTINCT unnest(coalesce(models, %s)) FROM {quote_ident(schemas.target)}.normalized_runs "
        "WHERE data_type = %s AND coalesce(integration_id, '') = %s AND first_seq < %s AND sync_run_id <> %s",
        (list(spec.model_ids), spec.name, run.integration_id or "", run.first_seq, run.sync_run_id),
    )
    return {row[0] for row in cur.fetchall()}


def snapshot_problems(
    cur: Any, schemas: Schemas, spec: DataTypeSpec, run: LandedRun, *, landed: int, unkeyed: int, models: list[str]
) -> list[str]:
    """Why this ``initial_sync`` run may not delete what it did not contain, each with what to do (empty: it may)."""
    problems = []
    if not run.complete:
        problems.append(
            "the run is not complete (normalized with force): it is applied when the run is "
            "normalized again once complete (normalize --pending does that)"
        )
    reconciliation = Reconciliation(
        sync_run_id=run.sync_run_id, landed=landed, emitted=run.emitted_count, consumed=run.consumed_count
    )
    if run.complete and reconciliation.expected is None:
        problems.append(
            "Knit reported no emitted/consumed counts for it, so nothing shows that every record "
            "landed: start a new full_resync"
        )
    elif not reconciliation.ok:
        problems.append(
            f"{reconciliation.describe()}: the missing {spec.records} would be deleted wrongly; find "
            "the lost events (see reconciliation) or start a new full_resync"
        )
    try:
        dead = len(dead_letters_for_run(cur, schemas, run.sync_run_id))
    except DeadLettersUnreadableError as exc:
        problems.append(f"its dead letters cannot be checked: {exc}")
    else:
        if dead:
            problems.append(
                f"{dead} of its bodies are in {schemas.landing}.dead_letters: see them with "
                f"python -m knit_provider dead-letters list --run-id {run.sync_run_id}, replay them after "
                f"a fix (dead-letters replay --all-for-run {run.sync_run_id}), then normalize the run again"
            )
    if unkeyed:
        problems.append(
            f"{unkeyed} of its record events name no {spec.record} (their recordId and the {spec.record}'s "
            f"own id are empty), so the run cannot say which {spec.records} it "
            "contained: report them to Knit and start a new full_resync"
        )
    missing = sorted(_earlier_models(cur, schemas, spec, run) - set(models))
    if missing:
        problems.append(
            f"it carries the models {models} but earlier runs of the integration also carried "
            f"{missing}, and a sync of fewer models may leave {spec.records} out: start a "
            "full_resync with every model the integration uses"
        )
    return problems


@dataclass(frozen=True)
class Contradicted:
    """An applied snapshot, later than the run being normalized, that lacks some of the run's models."""

    sync_run_id: str
    first_seq: int
    missing: list[str]

    def note(self, run_id: str) -> str:
        return (
            f"the earlier run {run_id} carries the models {self.missing} that this snapshot does not, and "
            "a sync of fewer models may leave records out: start a full_resync with every model "
            "the integration uses"
        )


def contradicted_snapshots(
    cur: Any, schemas: Schemas, spec: DataTypeSpec, run: LandedRun, models: list[str]
) -> list[Contradicted]:
    """Applied snapshots of the run's integration and type that are later than it and lack a model it carries."""
    if not models:
        return []
    cur.execute(
        f"SELECT sync_run_id, first_seq, ARRAY(SELECT unnest(%s::text[]) EXCEPT SELECT unnest(models) ORDER BY 1) "
        f"FROM {quote_ident(schemas.target)}.normalized_runs "
        "WHERE snapshot = %s AND data_type = %s AND coalesce(integration_id, '') = %s AND first_seq > %s "
        "AND NOT coalesce(models, '{}') @> %s::text[] ORDER BY first_seq",
        (models, APPLIED, spec.name, run.integration_id or "", run.first_seq, models),
    )
    return [Contradicted(sync_run_id, first_seq, list(missing)) for sync_run_id, first_seq, missing in cur.fetchall()]
