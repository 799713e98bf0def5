"""Fill a landing store with a year of history, fast, the way ``land_events`` would have landed it.

A history is many complete runs of several integrations: one initial sync per integration, then
daily deltas, spread over ``days`` days of arrival time. Each chunk is one set-based statement that
builds application-sized payloads (about 1.5 KB, random event ids as Knit's are) inside Postgres and
inserts them with their run's ``sync_runs`` row, its counts and its completion, as ``land_events``
keeps them; ``received_at`` is set to the run's day in the past, so a partitioned layout puts each
run where its time of arrival belongs. Runs can be marked normalized (a year-old store has normalized
its history). Passing millions of payloads through ``land_events``' arrays would take minutes of
array copying that has nothing to do with the store's size; ingest itself is measured through the
receiver by the benchmarks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from knit_provider.settings import Schemas, quote_ident

CHUNK = 100_000

_FILL = """
WITH g AS (
    SELECT i,
           CASE WHEN %(initial)s THEN 'record.new'
                WHEN i %% 5 = 0 THEN 'record.new'
                WHEN i %% 17 = 0 THEN 'record.deleted'
                ELSE 'record.modified' END AS event_type,
           CASE WHEN %(initial)s THEN i ELSE (i * 7919) %% %(apps)s + 1 END AS app
    FROM generate_series(%(lo)s, %(hi)s) i
), f AS (
    SELECT i, event_type, 'app-' || app AS app_id,
           -- Knit's ids are random: uuid-shaped text from a hash, so the order of inserts into an
           -- index on event_id is as scattered as real traffic makes it.
           (md5(%(run_id)s || '/' || i))::uuid::text AS event_id,
           %(received_at)s::timestamptz + i * interval '1 millisecond' AS received_at,
           app
    FROM g
), p AS (
    SELECT f.*, jsonb_build_object(
        'eventId', event_id, 'eventType', event_type, 'syncType', %(sync_type)s,
        'syncDataType', 'ats_applications', 'syncJobId', %(job_id)s, 'syncRunId', %(run_id)s,
        'recordId', app_id,
        'eventData', CASE WHEN event_type = 'record.deleted'
            THEN jsonb_build_object('applicationId', app_id, 'candidateId', 'cand-' || app,
                                    'jobId', 'job-' || app %% 500)
            ELSE jsonb_build_object(
                'info', jsonb_build_object(
                    'id', app_id, 'status', 'ACTIVE', 'origin', 'REFERRAL', 'jobId', 'job-' || app %% 500,
                    'appliedAt', '2024-03-01T10:00:00Z',
                    'updatedAt', to_char(%(received_at)s::timestamptz, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                    'candidate', jsonb_build_object(
                        'id', 'cand-' || app, 'firstName', 'Ada', 'lastName', 'Lovelace',
                        'emails', jsonb_build_array(jsonb_build_object('type', 'PERSONAL',
                                                    'email', 'ada.' || app || '@example.com')),
                        'phones', jsonb_build_array(jsonb_build_object('type', 'MOBILE',
                                                    'phoneNumber', '+1' || (2000000000 + app))),
                        'location', jsonb_build_object('city', 'Berlin', 'country', 'DE'))),
                'currentStage', jsonb_build_object('id', 'st-' || i %% 6, 'name', 'Phone screen'),
                'interviews', jsonb_build_array(jsonb_build_object(
                    'id', app_id || '-iv1', 'subject', 'Technical interview', 'status', 'SCHEDULED',
                    'scheduledStart', '2024-03-05T10:00:00Z', 'scheduledEnd', '2024-03-05T11:00:00Z',
                    'interviewers', jsonb_build_array(jsonb_build_object('id', '91000', 'email', 'iv@corp.example')))),
                'offers', '[]'::jsonb,
                'attachments', jsonb_build_array(jsonb_build_object(
                    'type', 'RESUME', 'name', 'resume_' || app_id || '.pdf',
                    'link', 'https://files.corp.example/attachments/' || app_id || '?signature=' || md5(app_id))),
                'notes', repeat('x', 600))
            END) AS payload
    FROM f
), ins AS (
    INSERT INTO {landing}.events (event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id,
                                  record_id, integration_id, payload, received_at)
    SELECT event_id, event_type, %(sync_type)s, 'ats_applications', %(job_id)s, %(run_id)s, app_id,
           %(integration_id)s, payload, received_at
    FROM p
    RETURNING seq, event_id, received_at
){dedup}
INSERT INTO {landing}.sync_runs AS r (sync_run_id, sync_job_id, integration_id, sync_data_type, sync_type,
                                      first_seq, first_received_at, last_received_at, record_events)
SELECT %(run_id)s, %(job_id)s, %(integration_id)s, 'ats_applications', %(sync_type)s, min(seq), min(received_at),
       max(received_at), count(*)
FROM ins
ON CONFLICT (sync_run_id) DO UPDATE SET
    first_seq = least(r.first_seq, excluded.first_seq),
    first_received_at = least(r.first_received_at, excluded.first_received_at),
    last_received_at = greatest(r.last_received_at, excluded.last_received_at),
    record_events = r.record_events + excluded.record_events
"""

# With an event_ids table (the partitioned layout), the ids still inside the dedup window are kept there.
_DEDUP = """, kept AS (
    INSERT INTO {landing}.event_ids (event_id, received_at)
    SELECT event_id, received_at FROM ins WHERE received_at > now() - {landing}.dedup_window()
)"""

_COMPLETE = """
UPDATE {landing}.sync_runs
SET processed_count = record_events, emitted_count = record_events, consumed_count = record_events,
    processed_complete = true, counts_rank = 3, all_consumed_at = last_received_at,
    all_consumed_seq = first_seq, complete_at = last_received_at, complete_seq = first_seq,
    completed_by = 'allConsumed', normalized_at = CASE WHEN %(normalized)s THEN last_received_at END
WHERE sync_run_id = %(run_id)s
"""


@dataclass(frozen=True)
class History:
    """Shape of the history: ``integrations`` times (one initial sync of ``apps`` + daily deltas)."""

    events: int
    integrations: int = 4
    apps: int = 100_000
    days: int = 365
    delta: int = 2_000


def _has_event_ids(conn: Any, schemas: Schemas) -> bool:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{quote_ident(schemas.landing)}.event_ids",))
        return bool(cur.fetchone()[0])


def partition_history(conn: Any, schemas: Schemas, days: int) -> int:
    """Give a new store the weekly partitions it would have after ``days`` days in service; return how many.

    On a new store the first partition (the table as 0001 created it, empty) covers all of the past; a
    store in service for a year has a partition per week instead, which is what the history should
    fill. Refuses a store that holds events.
    """
    landing = quote_ident(schemas.landing)
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {landing}.events)")
        if cur.fetchone()[0]:
            raise ValueError(f"{schemas.landing}.events is not empty: partition_history is for a new store")
        cur.execute(f"DROP TABLE IF EXISTS {landing}.events_legacy")
        cur.execute(
            f"SELECT {landing}.ensure_event_partitions(now() - %s * interval '1 day', %s)", (days, days // 7 + 5)
        )
        return int(cur.fetchone()[0])


def fill(conn: Any, schemas: Schemas, history: History, *, normalized: bool = True) -> dict[str, Any]:
    """Land ``history.events`` events as complete runs spread over ``history.days`` days; return figures."""
    landing = quote_ident(schemas.landing)
    dedup = _DEDUP.replace("{landing}", landing) if _has_event_ids(conn, schemas) else ""
    sql = _FILL.replace("{dedup}", dedup).replace("{landing}", landing)
    complete = _COMPLETE.replace("{landing}", landing)
    started = time.perf_counter()
    runs: list[tuple[str, str, str, bool, int]] = []  # run id, job id, integration, initial, events
    left = history.events
    for k in range(history.integrations):
        n = min(history.apps, left)
        runs.append((f"hist-{k}-initial", f"sj-{k}-initial", f"int-hist-{k}", True, n))
        left -= n
    deltas = 0
    while left > 0:
        for k in range(history.integrations):
            n = min(history.delta, left)
            if n <= 0:
                break
            runs.append((f"hist-{k}-d{deltas}", f"sj-{k}-d{deltas}", f"int-hist-{k}", False, n))
            left -= n
        deltas += 1
    landed = 0
    for index, (run_id, job_id, integration, initial, n) in enumerate(runs):
        # Initial syncs at the start of the history, then the deltas spread evenly up to yesterday.
        ago = float(history.days) if initial else max(history.days * (1 - index / len(runs)), 1.0)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT now() - %s * interval '1 day'", (ago,))
            received_at = cur.fetchone()[0]
        for lo in range(1, n + 1, CHUNK):
            with conn, conn.cursor() as cur:
                cur.execute(
                    sql,
                    {
                        "initial": initial,
                        "apps": history.apps,
                        "lo": lo,
                        "hi": min(lo + CHUNK - 1, n),
                        "run_id": run_id,
                        "job_id": job_id,
                        "integration_id": integration,
                        "sync_type": "initial_sync" if initial else "delta_sync",
                        "received_at": received_at,
                    },
                )
        with conn, conn.cursor() as cur:
            cur.execute(complete, {"run_id": run_id, "normalized": normalized})
        landed += n
    return {
        "history_events": landed,
        "history_runs": len(runs),
        "fill_seconds": round(time.perf_counter() - started, 1),
    }
