"""Dead letters: authentic bodies the receiver could not land as events, kept once each, and their replay.

The receiver answers 200 to any body whose signature verifies (Knit's retries could not change it),
so a body that is not a usable event (not JSON, no ``eventId``, refused by the database) is kept in
``dead_letters``: one row per distinct body, with the attempts counted and the ids that could be
read, so that it is counted against its run. Reconciliation names a run's dead letters, and
normalization's snapshot step refuses to treat a run with dead letters as complete
(:func:`dead_letters_for_run`). Once the cause is fixed (a receiver release, or nothing at all when
the database refused it only for a while), :func:`replay` lands the body through the receiver's own
write path and sets ``replayed_at``; the row stays as evidence.

Reading the ids needs ``SELECT`` on the columns in ``INFO_COLUMNS`` only: the bodies and headers
(candidates' personal data) can stay private to the receiver's role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from knit_provider.landing.store import Failure, Landed, LandingStore, classify
from knit_provider.settings import Schemas, quote_ident
from knit_provider.webhook.envelope import EnvelopeError, read_event

# What listing and counting read; a role granted SELECT on these columns alone never sees a body.
INFO_COLUMNS: tuple[str, ...] = (
    "id",
    "received_at",
    "last_received_at",
    "attempts",
    "reason",
    "integration_id",
    "event_id",
    "event_type",
    "sync_job_id",
    "sync_run_id",
    "replayed_at",
)


class DeadLetterNotFoundError(LookupError):
    """No dead letter has this id (or none carries this run id)."""


class DeadLettersUnreadableError(PermissionError):
    """This database role may not read the dead letters' ids, so whether a run has any is unknown."""


@dataclass(frozen=True)
class DeadLetterInfo:
    """One dead letter without its body: when it came, how often, why it is here, and whose it is."""

    id: int
    received_at: datetime  # first seen
    last_received_at: datetime
    attempts: int
    reason: str
    integration_id: str | None
    event_id: str | None
    event_type: str | None
    sync_job_id: str | None
    sync_run_id: str | None
    replayed_at: datetime | None

    def describe(self) -> str:
        """One line: id, attempts and reason (what a failure message lists)."""
        times = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        event = f" event {self.event_id}" if self.event_id else ""
        return f"#{self.id}{event} ({times}): {self.reason}"


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter whole: its info, the request headers kept (credentials dropped) and the exact body."""

    info: DeadLetterInfo
    headers: dict[str, str]
    body: bytes


def _table(schemas: Schemas) -> str:
    return f"{quote_ident(schemas.landing)}.dead_letters"


def _info(row: Sequence[Any]) -> DeadLetterInfo:
    return DeadLetterInfo(*row)


def check_readable(cur: Any, schemas: Schemas) -> None:
    """Raise :class:`DeadLettersUnreadableError`, saying what to grant, unless the ids can be read.

    A privilege check rather than a failed query: the caller's transaction stays usable.
    """
    cur.execute(
        "SELECT bool_and(has_column_privilege(%s, c, 'SELECT')) FROM unnest(%s::text[]) AS c",
        (f"{schemas.landing}.dead_letters", list(INFO_COLUMNS)),
    )
    (readable,) = cur.fetchone()
    if not readable:
        raise DeadLettersUnreadableError(
            f"This role may not read {schemas.landing}.dead_letters, so a run's dead letters cannot be "
            f"checked. As the owner of {schemas.landing}, run: GRANT SELECT ({', '.join(INFO_COLUMNS)}) ON "
            f"{schemas.landing}.dead_letters TO <this role>; (the bodies and headers can stay private)."
        )


def dead_letters_for_run(
    cur: Any, schemas: Schemas, run_id: str, include_replayed: bool = False
) -> list[DeadLetterInfo]:
    """The dead letters that carry ``run_id``, oldest first; replayed ones (now events) only if asked.

    An empty list means none of the run's bodies is waiting in the dead letters.

    :param cur: a psycopg2 cursor; nothing is written and the transaction stays usable.
    :raises DeadLettersUnreadableError: this role may not read the dead letters' ids.
    """
    check_readable(cur, schemas)
    cur.execute(
        f"SELECT {', '.join(INFO_COLUMNS)} FROM {_table(schemas)} "
        "WHERE sync_run_id = %s AND (%s OR replayed_at IS NULL) ORDER BY id",
        (run_id, include_replayed),
    )
    return [_info(row) for row in cur.fetchall()]


def list_dead_letters(
    cur: Any,
    schemas: Schemas,
    *,
    run_id: str | None = None,
    integration_id: str | None = None,
    since: datetime | None = None,
    include_replayed: bool = False,
) -> list[DeadLetterInfo]:
    """Dead letters matching every filter given, oldest first; ``since`` compares the last time seen."""
    cur.execute(
        f"SELECT {', '.join(INFO_COLUMNS)} FROM {_table(schemas)} "
        "WHERE (%(run)s::text IS NULL OR sync_run_id = %(run)s) "
        "AND (%(integration)s::text IS NULL OR integration_id = %(integration)s) "
        "AND (%(since)s::timestamptz IS NULL OR last_received_at >= %(since)s) "
        "AND (%(replayed)s OR replayed_at IS NULL) ORDER BY id",
        {"run": run_id, "integration": integration_id, "since": since, "replayed": include_replayed},
    )
    return [_info(row) for row in cur.fetchall()]


def get_dead_letter(cur: Any, schemas: Schemas, letter_id: int) -> DeadLetter:
    """The dead letter ``letter_id`` with its headers and body.

    :raises DeadLetterNotFoundError: no dead letter has this id.
    """
    cur.execute(f"SELECT {', '.join(INFO_COLUMNS)}, headers, body FROM {_table(schemas)} WHERE id = %s", (letter_id,))
    row = cur.fetchone()
    if row is None:
        raise DeadLetterNotFoundError(
            f"No dead letter has id {letter_id} in {schemas.landing}.dead_letters: "
            "`python -m knit_provider dead-letters list --include-replayed` shows them all."
        )
    *info, headers, body = row
    return DeadLetter(_info(info), dict(headers), bytes(body))


@dataclass(frozen=True)
class ReplayResult:
    """What replaying one dead letter did (or, in a dry run, would do)."""

    letter_id: int
    landed: bool  # the body is an event in the landing store now (newly, or it already was)
    new: bool  # the event was not there before
    event_id: str | None = None
    sync_run_id: str | None = None
    error: str | None = None  # why it was not replayed; the dead letter is left as it was

    def describe(self, dry_run: bool = False) -> str:
        if self.error is not None:
            return f"dead letter #{self.letter_id}: not replayed: {self.error}"
        run = f" of run {self.sync_run_id}" if self.sync_run_id else ""
        state = "new" if self.new else "it had already landed"
        verb = "would land" if dry_run else "landed"
        return f"dead letter #{self.letter_id}: {verb} as event {self.event_id}{run} ({state})"


async def replay(conn: Any, schemas: Schemas, letter_ids: Sequence[int], dry_run: bool = False) -> list[ReplayResult]:
    """Land each dead letter's body as the receiver would, and mark it replayed; each in its own transaction.

    The body is read with the receiver's :func:`~knit_provider.webhook.envelope.read_event` and
    written with its :class:`~knit_provider.landing.store.LandingStore` (``land_events``, the
    run's ``sync_runs`` row and NOTIFY included). A body that is still not a usable event, or that
    the database still refuses, is reported and left as it was. ``dry_run`` does the same writes
    and rolls them back, so it also shows whether the database would accept the event now.

    :param conn: an asyncpg connection to the landing database.
    :raises DeadLetterNotFoundError: an id is unknown (checked before anything is written).
    """
    rows = await conn.fetch(
        f"SELECT id, body, headers::text, integration_id FROM {_table(schemas)} WHERE id = ANY($1::bigint[])",
        list(letter_ids),
    )
    found = {row["id"]: row for row in rows}
    unknown = [letter_id for letter_id in letter_ids if letter_id not in found]
    if unknown:
        raise DeadLetterNotFoundError(
            f"No dead letter has id {', '.join(map(str, unknown))} in {schemas.landing}.dead_letters: "
            "`python -m knit_provider dead-letters list --include-replayed` shows them all."
        )
    store = LandingStore(schemas)
    mark = f"UPDATE {_table(schemas)} SET replayed_at = clock_timestamp() WHERE id = $1"
    results: list[ReplayResult] = []
    for letter_id in dict.fromkeys(letter_ids):
        row = found[letter_id]
        headers = orjson.loads(row["headers"])
        try:
            event = read_event(bytes(row["body"]), row["integration_id"], headers.get("x-knit-execution-id"))
        except EnvelopeError as exc:
            results.append(ReplayResult(letter_id, False, False, error=f"still not a usable event: {exc}"))
            continue
        transaction = conn.transaction()
        await transaction.start()
        try:
            landed = await store.land(conn, [event], [])
            refusal = _refusal(landed, event.event_id)
            if refusal is None:
                await conn.execute(mark, letter_id)
        except asyncpg.PostgresError as exc:
            await transaction.rollback()
            if classify(exc) is not Failure.DATA:
                raise
            error = f"the database still refuses the event: {exc}"
            results.append(ReplayResult(letter_id, False, False, event.event_id, event.sync_run_id, error))
            continue
        except BaseException:
            await transaction.rollback()
            raise
        if dry_run or refusal is not None:
            await transaction.rollback()
        else:
            await transaction.commit()
        if refusal is not None:
            results.append(ReplayResult(letter_id, False, False, event.event_id, event.sync_run_id, refusal))
        else:
            results.append(ReplayResult(letter_id, True, landed.new > 0, event.event_id, event.sync_run_id))
    return results


def _refusal(landed: Landed, event_id: str | None) -> str | None:
    """Why ``land_events`` took the replayed event without storing it, or None when it is stored (now or before)."""
    if landed.replayed:
        return (
            "its run completed and began before the dedup window, so the landing store takes no more events of it "
            "(docs/security.md, replays)"
        )
    if landed.conflicts:
        return f"event id {event_id} already landed with a different body"
    return None
