"""Reconciliation: did every record event Knit says it sent for a run land?

Knit sends ``sync.events.allConsumed`` only after each event of the run got its HTTP 200, and the
receiver answers 200 only after the body is committed: as an event, or, for an authentic body that
is not a usable event, as a dead letter. So fewer distinct record events landed than Knit emitted
(or saw consumed) means events are in the run's dead letters, or were lost: a failure, never a
retry case. The failure names the run's dead letters and how to inspect and replay them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knit_provider.landing.dead_letters import DeadLetterInfo, DeadLettersUnreadableError, dead_letters_for_run
from knit_provider.normalize.runs import RunNotFoundError
from knit_provider.settings import RECORD_EVENT_TYPES, Schemas, quote_ident


@dataclass(frozen=True)
class Reconciliation:
    """Landed record events of a run beside Knit's own counts (``None`` when Knit has not reported)."""

    sync_run_id: str
    landed: int
    emitted: int | None
    consumed: int | None
    # Read only when the run falls short: its dead letters not yet replayed, or why they could not be read.
    dead_letters: tuple[DeadLetterInfo, ...] = ()
    dead_letters_unreadable: str | None = None

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
        """Plain values for XCom: the dead letters as their ids, reasons and attempts."""
        return {
            "sync_run_id": self.sync_run_id,
            "landed": self.landed,
            "emitted": self.emitted,
            "consumed": self.consumed,
            "shortfall": self.shortfall,
            "ok": self.ok,
            "dead_letters": [
                {"id": d.id, "event_id": d.event_id, "reason": d.reason, "attempts": d.attempts}
                for d in self.dead_letters
            ],
        }

    def describe(self) -> str:
        if self.expected is None:
            return (
                f"run {self.sync_run_id}: {self.landed} record events landed; Knit has reported no counts "
                "yet, nothing to reconcile against"
            )
        verdict = "ok" if self.ok else f"{self.shortfall} MISSING"
        return (
            f"run {self.sync_run_id}: {self.landed} record events landed, Knit emitted {self.emitted} "
            f"and saw {self.consumed} consumed: {verdict}{self.dead_letter_note()}"
        )

    def dead_letter_note(self) -> str:
        """What the dead letters say about a shortfall (empty when the run reconciles)."""
        if self.ok:
            return ""
        if self.dead_letters_unreadable is not None:
            return f". Its dead letters could not be checked: {self.dead_letters_unreadable}"
        if not self.dead_letters:
            return ""
        listed = "; ".join(d.describe() for d in self.dead_letters)
        return (
            f". {len(self.dead_letters)} of its bodies are in the dead letters (authentic, answered 200, not "
            f"landed as events): {listed}. Inspect one with `python -m knit_provider dead-letters show ID`; "
            f"once the cause is fixed, `python -m knit_provider dead-letters replay --all-for-run "
            f"{self.sync_run_id}` lands them, then normalize the run again"
        )


class ReconciliationError(Exception):
    """Fewer record events landed for a run than Knit emitted or saw consumed."""

    def __init__(self, reconciliation: Reconciliation) -> None:
        self.reconciliation = reconciliation
        self.sync_run_id = reconciliation.sync_run_id
        self.landed = reconciliation.landed
        self.emitted = reconciliation.emitted
        self.consumed = reconciliation.consumed
        self.dead_letters = reconciliation.dead_letters
        if reconciliation.dead_letters:
            advice = reconciliation.dead_letter_note().removeprefix(". ") + "."
        else:
            advice = (
                "Events acknowledged with HTTP 200 must have been committed, so check the receiver's "
                "database and logs for lost writes; re-running will not bring them back."
                + reconciliation.dead_letter_note()
            )
        super().__init__(
            f"Sync run {reconciliation.sync_run_id!r}: {reconciliation.landed} distinct record events landed, "
            f"but Knit emitted {reconciliation.emitted} and saw {reconciliation.consumed} consumed "
            f"({reconciliation.shortfall} missing). {advice}"
        )


def reconcile_run(conn: Any, run_id: str, schemas: Schemas) -> Reconciliation:
    """Count the run's distinct record events in the landing store (event ids are unique there).

    When the run falls short, its dead letters (not yet replayed) are read too, to be named in the
    failure; a role that may not read them gets the failure with what to grant instead.
    """
    landing = quote_ident(schemas.landing)
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT emitted_count, consumed_count FROM {landing}.sync_runs WHERE sync_run_id = %s", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise RunNotFoundError(f"Sync run {run_id!r} has no landed events in {schemas.landing}.sync_runs.")
        cur.execute(
            f"SELECT count(*) FROM {landing}.events WHERE sync_run_id = %s AND event_type = ANY(%s)",
            (run_id, list(RECORD_EVENT_TYPES)),
        )
        (landed,) = cur.fetchone()
        reconciliation = Reconciliation(sync_run_id=run_id, landed=int(landed), emitted=row[0], consumed=row[1])
        if reconciliation.ok:
            return reconciliation
        try:
            letters = tuple(dead_letters_for_run(cur, schemas, run_id))
        except DeadLettersUnreadableError as exc:
            return Reconciliation(run_id, int(landed), row[0], row[1], dead_letters_unreadable=str(exc))
    return Reconciliation(run_id, int(landed), row[0], row[1], dead_letters=letters)


def check(reconciliation: Reconciliation) -> Reconciliation:
    """Raise :class:`ReconciliationError` on a shortfall, else hand the reconciliation back."""
    if not reconciliation.ok:
        raise ReconciliationError(reconciliation)
    return reconciliation
