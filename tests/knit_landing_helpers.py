"""Test helpers shared by the trigger and sensor tests: land Knit events through ``land_events``, watch a
trigger's backend in ``pg_stat_activity``, wait on conditions with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2

from knit_provider.landing.migrate import FUNCTIONS, MIGRATIONS, USES
from knit_provider.settings import ATS_APPLICATIONS, Schemas
from knit_provider.sql import load_sql

# Knit's six application models, as its Application Data Models page lists them: what the ats_applications
# spec must offer (written out here, so the tests check the spec against Knit's list, not against itself).
ATS_APPLICATION_MODELS: tuple[str, ...] = (
    "application_info",
    "application_stage",
    "application_interviews",
    "application_rejection",
    "application_offers",
    "application_attachments",
)


def _now_ms() -> int:
    return int(time.time() * 1000)


LAND_SQL = "SELECT knit_landing.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[])"


class Lander:
    """Land events the way the receiver does (``land_events`` + commit), one transaction per call."""

    def __init__(self, url: str, integration_id: str = "int-1", data_type: str = ATS_APPLICATIONS) -> None:
        self.conn = psycopg2.connect(url)
        self.integration_id = integration_id
        self.data_type = data_type

    def close(self) -> None:
        self.conn.close()

    def land(self, events: list[dict[str, Any]]) -> int:
        columns: list[list[Any]] = [[] for _ in range(9)]
        for event in events:
            values = (
                event["eventId"],
                event["eventType"],
                event.get("syncType"),
                event.get("syncDataType"),
                event.get("syncJobId"),
                event.get("syncRunId"),
                event.get("recordId"),
                self.integration_id,
                json.dumps(event),
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        with self.conn, self.conn.cursor() as cur:
            cur.execute(LAND_SQL, columns)
            return int(cur.fetchone()[0])

    def event(
        self,
        event_type: str,
        job: str,
        run: str,
        data: dict[str, Any],
        record_id: str | None = None,
    ) -> dict[str, Any]:
        event = {
            "eventId": str(uuid.uuid4()),
            "eventType": event_type,
            "eventData": data,
            "syncType": "delta_sync",
            "syncDataType": self.data_type,
            "syncJobId": job,
            "syncRunId": run,
        }
        if record_id is not None:
            event["recordId"] = record_id
        return event

    def records(self, job: str, run: str, count: int) -> None:
        self.land([self.event("record.new", job, run, {"info": {"id": f"app-{i}"}}, f"app-{i}") for i in range(count)])

    def processed(
        self, job: str, run: str, processed: int, emitted: int, complete: bool = False, started_at_ms: int | None = None
    ) -> None:
        self.land(
            [
                self.event(
                    "sync.events.processed",
                    job,
                    run,
                    {
                        "status": "SUCCESS",
                        "processed": str(processed),
                        "emitted": str(emitted),
                        "startedAt": str(started_at_ms or _now_ms()),
                        "processedAt": "1714557660000",
                        "complete": complete,
                    },
                )
            ]
        )

    def all_consumed(self, job: str, run: str, count: int, started_at_ms: int | None = None) -> None:
        """Knit's startedAt defaults to now: a wait by job and start time passes over runs Knit began earlier."""
        self.land(
            [
                self.event(
                    "sync.events.allConsumed",
                    job,
                    run,
                    {
                        "status": "SUCCESS",
                        "processed": str(count),
                        "emitted": str(count),
                        "consumed": str(count),
                        "startedAt": str(started_at_ms or _now_ms()),
                        "processedAt": "1714557660000",
                        "completedAt": "1714557720000",
                        "complete": True,
                    },
                )
            ]
        )

    def now(self) -> datetime:
        """The database clock, as StartSyncOperator reads it."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT now()")
            return cur.fetchone()[0]

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self.conn, self.conn.cursor() as cur:
            cur.execute(sql, params)


def ids(prefix: str) -> tuple[str, str]:
    """A fresh job id and a run-id prefix, so tests in one database never see each other's runs."""
    token = uuid.uuid4().hex[:8]
    return f"{prefix}-job-{token}", f"{prefix}-run-{token}"


def backend_check(url: str, application_name: str, after: datetime | None) -> tuple[int, datetime] | None:
    """The (pid, query_start) of the trigger's backend once it sits idle after a query started after ``after``."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pid, query_start FROM pg_stat_activity WHERE application_name = %s "
            "AND state = 'idle' AND query LIKE '%%sync_runs%%' "
            "AND (%s::timestamptz IS NULL OR query_start > %s) ORDER BY query_start DESC LIMIT 1",
            (application_name, after, after),
        )
        row = cur.fetchone()
    conn.close()
    return (row[0], row[1]) if row else None


async def wait_for(condition: Callable[[], Awaitable[Any]], what: str, timeout: float = 15.0) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def checked(url: str, application_name: str, after: datetime | None = None) -> tuple[int, datetime]:
    """Wait until the trigger has run a check (after ``after``) and gone back to waiting."""
    result: tuple[int, datetime] = await wait_for(
        lambda: asyncio.to_thread(backend_check, url, application_name, after),
        f"{application_name} to check the landing store",
    )
    return result


def store_at_version(cur: Any, schemas: Schemas, count: int, *, with_functions: bool = False) -> None:
    """A fresh landing schema as a release with the first ``count`` migrations left it, recorded as applied,
    so that a test can populate it and check what ``migrate`` does to it.

    A function has one definition, today's (``sql/landing/functions/``): the store holds those a migration
    calls while it runs, and all of them with ``with_functions`` (for a store whose tables are the ones they
    are written for). An older store is populated with :func:`land_as_release`."""
    landing = schemas.landing
    cur.execute(f"DROP SCHEMA IF EXISTS {landing} CASCADE")
    cur.execute(f"CREATE SCHEMA {landing}")
    cur.execute(
        f"CREATE TABLE {landing}.schema_migrations (name text PRIMARY KEY, "
        "applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for name in MIGRATIONS[:count]:
        for used in USES.get(name, ()):
            cur.execute(load_sql(used, schemas))
        cur.execute(load_sql(name, schemas))
        cur.execute(f"INSERT INTO {landing}.schema_migrations (name) VALUES (%s)", (name,))
    for name in FUNCTIONS if with_functions else ():
        cur.execute(load_sql(name, schemas))


_RECORD_TYPES = ("record.new", "record.modified", "record.deleted")


def land_as_release(
    cur: Any,
    schemas: Schemas,
    version: int,
    events: list[dict[str, Any]],
    integration_id: str | None = "int-1",
    days_ago: float = 0,
) -> None:
    """Land ``events`` (envelopes, one arrival each, in order) in a store built by :func:`store_at_version`
    at ``version`` as that release's ``land_events`` left them, ``days_ago`` days ago.

    That release's writer is gone (today's expects today's tables), and the migrations under test read rows,
    not the writer: so the rows are written directly. The events (seq follows the list), their ids in
    ``event_ids`` (from 0003), each run's ``sync_runs`` row as its events say (first and last seq and time,
    record events, the first allConsumed, which also completes it from 0002), and the integration's first and
    last event in ``integrations`` (from 0004)."""
    landing = schemas.landing
    ago = f"clock_timestamp() - {float(days_ago)} * interval '1 day'"
    for event in events:
        keys = ("eventId", "eventType", "syncType", "syncDataType", "syncJobId", "syncRunId", "recordId")
        cur.execute(
            f"INSERT INTO {landing}.events (event_id, event_type, sync_type, sync_data_type, sync_job_id, "
            f"sync_run_id, record_id, integration_id, payload, received_at) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, {ago})",
            (*(event.get(key) for key in keys), integration_id, json.dumps(event)),
        )
        if version >= 3:
            cur.execute(
                f"INSERT INTO {landing}.event_ids (event_id, received_at) VALUES (%s, {ago})", (event["eventId"],)
            )
    runs = sorted({event["syncRunId"] for event in events if event.get("syncRunId")})
    cur.execute(f"DELETE FROM {landing}.sync_runs WHERE sync_run_id = ANY(%s)", (runs,))
    cur.execute(
        f"INSERT INTO {landing}.sync_runs (sync_run_id, sync_job_id, integration_id, sync_data_type, sync_type, "
        "first_seq, first_received_at, last_received_at, record_events, all_consumed_at, all_consumed_seq) "
        "SELECT sync_run_id, min(sync_job_id), min(integration_id), min(sync_data_type), min(sync_type), min(seq), "
        "min(received_at), max(received_at), count(*) FILTER (WHERE event_type = ANY(%s)), "
        "min(received_at) FILTER (WHERE event_type = 'sync.events.allConsumed'), "
        "min(seq) FILTER (WHERE event_type = 'sync.events.allConsumed') "
        f"FROM {landing}.events WHERE sync_run_id = ANY(%s) GROUP BY sync_run_id",
        (list(_RECORD_TYPES), runs),
    )
    if version >= 2:
        cur.execute(
            f"UPDATE {landing}.sync_runs SET complete_at = all_consumed_at, complete_seq = all_consumed_seq, "
            "completed_by = 'allConsumed' WHERE sync_run_id = ANY(%s) AND all_consumed_seq IS NOT NULL",
            (runs,),
        )
    if version >= 4 and integration_id is not None:
        cur.execute(
            f"INSERT INTO {landing}.integrations AS i (integration_id, first_seen_at, last_event_at) "
            f"SELECT integration_id, min(received_at), max(received_at) FROM {landing}.events "
            "WHERE integration_id = %s GROUP BY integration_id "
            "ON CONFLICT (integration_id) DO UPDATE SET first_seen_at = excluded.first_seen_at, "
            "last_event_at = excluded.last_event_at",
            (integration_id,),
        )


@contextlib.contextmanager
def receiver_process(landing_url: str, secret: str, log_dir: Path) -> Iterator[str]:
    """``python -m knit_provider.webhook`` on a free port, landing in ``landing_url``; yields its webhook URL."""
    from knit_devtools.embedded_postgres import free_port
    from knit_devtools.services import Service

    port = free_port()
    env = {
        **os.environ,
        "KNIT_WEBHOOK_DATABASE_URL": landing_url,
        "KNIT_WEBHOOK_SECRET": secret,
        "PYTHONUNBUFFERED": "1",
    }
    service = Service(
        "receiver",
        [sys.executable, "-m", "knit_provider.webhook", "--host", "127.0.0.1", "--port", str(port)],
        log_path=log_dir / "receiver.log",
        env=env,
        ready_url=f"http://127.0.0.1:{port}/health",
    ).start()
    try:
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        service.stop()
