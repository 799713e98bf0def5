"""Writes to the landing store over asyncpg: batches of events through ``land_events``, dead letters
through ``land_dead_letters``. The receiver and ``dead-letters replay`` both write through here.

Also decides, in one place, what a database error means for the batch that raised it: the
connection is gone (answer 503, reconnect), a transient conflict (retry the batch), bad data in
one of the events (find it, land the rest), or a server-side problem (503, Knit retries).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import orjson

from knit_provider.settings import Schemas, quote_ident


class EventRow(Protocol):
    """What ``land_events`` needs of one event (``knit_provider.webhook.envelope.Event`` is one)."""

    event_id: str | None
    event_type: str | None
    sync_type: str | None
    sync_data_type: str | None
    sync_job_id: str | None
    sync_run_id: str | None
    record_id: str | None
    integration_id: str | None
    payload: str
    execution_id: str | None


class DeadLetterRow(Protocol):
    """A signed body that could not be landed as an event, with why and the ids that could be read from it."""

    integration_id: str | None
    reason: str
    headers: dict[str, str]
    body: bytes
    event_id: str | None
    event_type: str | None
    sync_job_id: str | None
    sync_run_id: str | None


class Failure(enum.Enum):
    """What a failed write means for its batch."""

    CONNECTION = "connection"  # the connection is unusable: reconnect; the batch was not acknowledged
    RETRY = "retry"  # deadlock or serialization failure: run the same batch again
    DATA = "data"  # an event's content was refused: isolate it, land the others
    SERVER = "server"  # anything else on the server side: answer 503 and let Knit retry


# SQLSTATE classes: 22 data exception, 23 integrity violation, 54 program limit (e.g. index row size).
_DATA_CLASSES = ("22", "23", "54")
_RETRY_STATES = ("40P01", "40001")
# 08 connection exception, 57P0x admin/crash shutdown or cannot connect now, 53300 too many connections.
_CONNECTION_STATES = ("57P01", "57P02", "57P03", "53300")


def classify(exc: BaseException) -> Failure:
    """Map an exception raised by a write to what the writer must do about it."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state in _RETRY_STATES:
            return Failure.RETRY
        if state.startswith("08") or state in _CONNECTION_STATES:
            return Failure.CONNECTION
        if state[:2] in _DATA_CLASSES:
            return Failure.DATA
        return Failure.SERVER
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, ConnectionError)):
        return Failure.CONNECTION
    return Failure.SERVER


@dataclass(frozen=True)
class Landed:
    """What one ``land_events`` call did with a batch of events."""

    new: int  # events stored
    replayed: int  # acknowledged but not stored: their run is closed (complete before the dedup window)
    rehomed: int  # stored under their run's integration, not the other one their header named
    conflicts: list[int]  # positions in the batch of events whose id had landed with another body: not stored


def body_digest(payload: str) -> bytes:
    """The digest ``event_ids`` keeps of a body landed under an id, to tell a retry from a different body."""
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).digest()


def _sanitize(text: str) -> str:
    # Header values travel into jsonb, which refuses NUL.
    return text.replace("\x00", "\ufffd")


class LandingStore:
    """The landing store's write statements for one schema, rendered once."""

    def __init__(self, schemas: Schemas) -> None:
        landing = quote_ident(schemas.landing)
        self.land_sql = (
            f"SELECT * FROM {landing}.land_events($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
            "$6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[], $11::bytea[])"
        )
        self.dead_letter_sql = (
            f"SELECT {landing}.land_dead_letters($1::text[], $2::text[], $3::jsonb[], $4::bytea[], $5::text[], "
            "$6::text[], $7::text[], $8::text[])"
        )

    def land_args(self, events: Sequence[EventRow]) -> list[list[Any]]:
        """The eleven parallel arrays of ``land_events`` for ``events``, in arrival order."""
        return [
            [e.event_id for e in events],
            [e.event_type for e in events],
            [e.sync_type for e in events],
            [e.sync_data_type for e in events],
            [e.sync_job_id for e in events],
            [e.sync_run_id for e in events],
            [e.record_id for e in events],
            [e.integration_id for e in events],
            [e.payload for e in events],
            [e.execution_id for e in events],
            [body_digest(e.payload) for e in events],
        ]

    def dead_letter_args(self, letters: Sequence[DeadLetterRow]) -> list[list[Any]]:
        return [
            [_sanitize(d.integration_id) if d.integration_id else None for d in letters],
            [_sanitize(d.reason) for d in letters],
            [orjson.dumps({_sanitize(k): _sanitize(v) for k, v in d.headers.items()}).decode() for d in letters],
            [d.body for d in letters],
            [d.event_id for d in letters],
            [d.event_type for d in letters],
            [d.sync_job_id for d in letters],
            [d.sync_run_id for d in letters],
        ]

    async def land(
        self, conn: Any, events: Sequence[EventRow], letters: Sequence[DeadLetterRow], timeout: float | None = None
    ) -> Landed:
        """Land ``events`` and store ``letters`` in one transaction; say what became of the events.

        Events alone are one statement, hence one implicit transaction and one round trip; dead
        letters (rare; one row per distinct body, a repeat counts an attempt) join them in an
        explicit transaction. Conflicting events are not stored: the caller keeps them (as dead letters).
        """
        if not letters:
            return await self._land_events(conn, events, timeout)
        async with conn.transaction():
            landed = Landed(0, 0, 0, [])
            if events:
                landed = await self._land_events(conn, events, timeout)
            await conn.fetchval(self.dead_letter_sql, *self.dead_letter_args(letters), timeout=timeout)
        return landed

    async def _land_events(self, conn: Any, events: Sequence[EventRow], timeout: float | None) -> Landed:
        row = await conn.fetchrow(self.land_sql, *self.land_args(events), timeout=timeout)
        return Landed(row["landed"], row["replayed"], row["rehomed"], [ord - 1 for ord in row["conflicts"]])
