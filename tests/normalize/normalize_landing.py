"""Build Knit envelopes and land them through ``land_events``, exactly as the receiver does."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

from knit_provider.normalize import normalize_runs
from knit_provider.settings import Schemas, quote_ident

_ids = itertools.count(1)  # event and run ids unique across the session


def application(
    app_id: str,
    *,
    stage: str | None = "s1",
    stage_key: str = "name",
    candidate: str | None = None,
    updated_at: str | None = None,
    **info: Any,
) -> dict[str, Any]:
    """An application's ``eventData`` with the given stage and info fields (others Knit-like)."""
    data: dict[str, Any] = {
        "info": {
            "id": app_id,
            "status": "ACTIVE",
            "origin": "REFERRAL",
            "jobId": "job-1",
            "appliedAt": "2024-01-02T03:04:05Z",
            "updatedAt": updated_at,
            "candidate": {
                "id": candidate or f"c-{app_id}",
                "firstName": "Ada",
                "lastName": "Lovelace",
                "emails": [{"type": "PERSONAL", "email": f"{app_id}@example.com"}],
                "phones": [],
                "links": [],
                "location": None,
            },
            "owner": {"id": "u1", "email": "owner@example.com", "employeeId": None},
            **info,
        },
        "currentStage": None if stage is None else {"id": stage, stage_key: f"Stage {stage}"},
        "interviews": [],
        "rejection": None,
        "offers": [],
        "attachments": [],
    }
    return data


@dataclass
class Run:
    """A sync run under construction: collect events, land them, complete it."""

    lander: Lander
    run_id: str
    integration_id: str = "int-1"
    sync_type: str = "delta_sync"
    job_id: str = "sj-1"
    emitted: int = 0
    events: list[str] = field(default_factory=list)
    data_type: str = "ats_applications"

    def envelope(
        self, event_type: str, data: Any, record_id: str | None, event_id: str | None = None
    ) -> dict[str, Any]:
        env: dict[str, Any] = {
            "eventId": event_id or f"ev-{next(_ids)}",
            "eventType": event_type,
            "eventData": data,
            "syncType": self.sync_type,
            "syncDataType": self.data_type,
            "syncJobId": self.job_id,
            "syncRunId": self.run_id,
        }
        if record_id is not None:
            env["recordId"] = record_id
        return env

    def record(
        self,
        event_type: str,
        app_id: str,
        data: Any = None,
        *,
        event_id: str | None = None,
        record_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Land one record event now; ``data`` defaults to :func:`application` (or the deleted shape).

        ``recordId`` is ``app_id`` unless ``record_id`` says otherwise (Knit may send ``""``).
        """
        if data is None:
            data = (
                {"applicationId": app_id, "candidateId": f"c-{app_id}", "jobId": "job-1"}
                if event_type == "record.deleted"
                else application(app_id, **kwargs)
            )
        env = self.envelope(event_type, data, app_id if record_id is None else record_id, event_id)
        self.lander.land([env], self.integration_id)
        if event_id is None or event_id not in self.events:
            self.emitted += 1
        self.events.append(env["eventId"])
        return str(env["eventId"])

    def new(self, app_id: str, **kwargs: Any) -> str:
        return self.record("record.new", app_id, **kwargs)

    def modified(self, app_id: str, **kwargs: Any) -> str:
        return self.record("record.modified", app_id, **kwargs)

    def deleted(self, app_id: str, **kwargs: Any) -> str:
        return self.record("record.deleted", app_id, **kwargs)

    def complete(
        self, *, emitted: int | None = None, consumed: int | None = None, started_ms: int = 1_700_000_000_000
    ) -> None:
        """Land processed + allConsumed with Knit's counts (default: what was landed)."""
        emitted = self.emitted if emitted is None else emitted
        consumed = emitted if consumed is None else consumed
        common = {
            "processed": emitted,
            "emitted": emitted,
            "startedAt": str(started_ms),
            "processedAt": str(started_ms + 1000),
            "complete": True,
        }
        self.lander.land(
            [
                self.envelope("sync.events.processed", {"status": "processed", **common}, None),
                self.envelope(
                    "sync.events.allConsumed",
                    {"status": "completed", "consumed": consumed, "completedAt": str(started_ms + 2000), **common},
                    None,
                ),
            ],
            self.integration_id,
        )


class Lander:
    """Lands envelopes into one database's landing schema through ``land_events``."""

    def __init__(self, conn: Any, schemas: Schemas) -> None:
        self.conn = conn
        self.schemas = schemas
        self._runs = itertools.count(1)

    def run(
        self,
        run_id: str | None = None,
        integration_id: str = "int-1",
        sync_type: str = "delta_sync",
        data_type: str = "ats_applications",
    ) -> Run:
        return Run(self, run_id or f"sr-{next(_ids)}", integration_id, sync_type, data_type=data_type)

    def initial(
        self, run_id: str | None = None, integration_id: str = "int-1", data_type: str = "ats_applications"
    ) -> Run:
        """A run of an ``initial_sync``: Knit sends every active record in it."""
        return self.run(run_id, integration_id, "initial_sync", data_type)

    def land(self, envelopes: list[dict[str, Any]], integration_id: str) -> int:
        columns = list(
            zip(
                *[
                    (
                        e["eventId"],
                        e["eventType"],
                        e.get("syncType"),
                        e.get("syncDataType"),
                        e.get("syncJobId"),
                        e.get("syncRunId"),
                        e.get("recordId"),
                        integration_id,
                        json.dumps(e),
                    )
                    for e in envelopes
                ],
                strict=True,
            )
        )
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                f"SELECT {quote_ident(self.schemas.landing)}.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[])",
                [list(c) for c in columns],
            )
            (landed,) = cur.fetchone()
        return int(landed)


# The change feed's columns on every normalized table.
FEED_COLUMNS = ("knit_changed_seq", "knit_created_seq", "knit_changed_at")

# The tables normalization owns, with the order that makes a dump comparable.
DATA_TABLES = {
    "ats_applications": "integration_id, application_id",
    "ats_application_interviews": "integration_id, application_id, position",
    "ats_application_offers": "integration_id, application_id, position",
    "ats_application_attachments": "integration_id, application_id, position",
    "ats_candidates": "integration_id, candidate_id",
    "ats_application_versions": "integration_id, application_id, first_seq, seq",
    "ats_application_stage_history": "integration_id, application_id, position",
}


# The tables of ats_jobs, likewise.
JOB_TABLES = {
    "ats_jobs": "integration_id, job_id",
    "ats_job_departments": "integration_id, job_id, position",
    "ats_job_offices": "integration_id, job_id, position",
    "ats_job_hiring_managers": "integration_id, job_id, position",
    "ats_job_recruiters": "integration_id, job_id, position",
    "ats_job_stages": "integration_id, job_id, position",
}


def dump(conn: Any, schemas: Schemas, tables: dict[str, str] = DATA_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the normalized tables, ordered: two dumps are equal iff the tables' data are identical.

    The change feed's columns (``knit_changed_seq``, ``knit_created_seq``, ``knit_changed_at``) are left out:
    they say when a normalization changed a row, which differs with the order runs are normalized in.
    """
    out = {}
    with conn, conn.cursor() as cur:
        for table, order in tables.items():
            cur.execute(
                "SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)"
                " FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s AND column_name NOT IN %s",
                (schemas.target, table, FEED_COLUMNS),
            )
            (columns,) = cur.fetchone()
            cur.execute(f"SELECT {columns} FROM {quote_ident(schemas.target)}.{table} ORDER BY {order}")
            out[table] = cur.fetchall()
    return out


def rows(conn: Any, schemas: Schemas, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """Run a query with ``{t}`` as the target schema; rows as dicts."""
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.replace("{t}", quote_ident(schemas.target)).replace("{l}", quote_ident(schemas.landing)), params
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def in_every_order(
    conn: Any, schemas: Schemas, run_ids: list[str], tables: dict[str, str] = DATA_TABLES
) -> dict[str, list[tuple[Any, ...]]]:
    """Normalize the runs in every order, each into its own target schema; all must end the same."""
    dumps = []
    for n, order in enumerate(permutations(run_ids)):
        target = Schemas(landing=schemas.landing, target=f"{schemas.target}_o{n}")
        normalize_runs(conn, list(order), target)
        dumps.append(dump(conn, target, tables))
    assert all(d == dumps[0] for d in dumps[1:])
    normalize_runs(conn, run_ids, schemas)
    assert dump(conn, schemas, tables) == dumps[0]
    return dumps[0]


def app(conn: Any, schemas: Schemas, app_id: str) -> dict[str, Any]:
    """The ``ats_applications`` row of one application."""
    (row,) = rows(conn, schemas, "SELECT * FROM {t}.ats_applications WHERE application_id = %s", (app_id,))
    return row
