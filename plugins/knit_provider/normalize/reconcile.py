"""Reconciliation: did every record event Knit says it sent for a run land?

Knit sends ``sync.events.allConsumed`` only after each event of the run got its HTTP 200, and the
receiver answers 200 only after the event is committed. So fewer distinct record events landed
than Knit emitted (or saw consumed) means events were lost: a failure, never a retry case.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from knit_provider.normalize.runs import RunNotFoundError
from knit_provider.settings import RECORD_EVENT_TYPES, Schemas, quote_ident


@dataclass(frozen=True)
class Reconciliation:
    """Landed record events of a run beside Knit's own counts (``None`` when Knit has not reported)."""

    sync_run_id: str
    landed: int
    emitted: int | None
    consumed: int | None

    @property
    def expected(self) -> int | None:
        known = [n for n in (self.emitted, self.consumed) if n is not None]
        return max(known) if known else None

    @property
    def shortfall(self) -> int:
        expected = self.expected
        return max(expected - self.landed, 0) if expected is not None else 0

    @property
    def ok(self) -> bool:
        return self.shortfall == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shortfall": self.shortfall, "ok": self.ok}

    def describe(self) -> str:
        if self.expected is None:
            return (f"run {self.sync_run_id}: {self.landed} record events landed; Knit has reported no counts "
                    "yet, nothing to reconcile against")
        verdict = "ok" if self.ok else f"{self.shortfall} MISSING"
        return (f"run {self.sync_run_id}: {self.landed} record events landed, Knit emitted {self.emitted} "
                f"and saw {self.consumed} consumed: {verdict}")


class ReconciliationError(Exception):
    """Fewer record events landed for a run than Knit emitted or saw consumed."""

    def __init__(self, reconciliation: Reconciliation) -> None:
        self.reconciliation = reconciliation
        self.sync_run_id = reconciliation.sync_run_id
        self.landed = reconciliation.landed
        self.emitted = reconciliation.emitted
        self.consumed = reconciliation.consumed
        super().__init__(
            f"Sync run {reconciliation.sync_run_id!r}: {reconciliation.landed} distinct record events landed, "
            f"but Knit emitted {reconciliation.emitted} and saw {reconciliation.consumed} consumed "
            f"({reconciliation.shortfall} missing). Events acknowledged with HTTP 200 must have been "
            "committed, so check the receiver's database and logs for lost writes; re-running will not "
            "bring them back.")


def reconcile_run(conn: Any, run_id: str, schemas: Schemas) -> Reconciliation:
    """Count the run's distinct record events in the landing store (event ids are unique there)."""
    landing = quote_ident(schemas.landing)
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT emitted_count, consumed_count FROM {landing}.sync_runs WHERE sync_run_id = %s",
                    (run_id,))
        row = cur.fetchone()
        if row is None:
            raise RunNotFoundError(f"Sync run {run_id!r} has no landed events in {schemas.landing}.sync_runs.")
        cur.execute(f"SELECT count(*) FROM {landing}.events WHERE sync_run_id = %s AND event_type = ANY(%s)",
                    (run_id, list(RECORD_EVENT_TYPES)))
        (landed,) = cur.fetchone()
    return Reconciliation(sync_run_id=run_id, landed=int(landed), emitted=row[0], consumed=row[1])


def check(reconciliation: Reconciliation) -> Reconciliation:
    """Raise :class:`ReconciliationError` on a shortfall, else hand the reconciliation back."""
    if not reconciliation.ok:
        raise ReconciliationError(reconciliation)
    return reconciliation
