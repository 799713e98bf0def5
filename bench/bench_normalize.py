"""Benchmark normalization: an initial run, a per-row Python baseline, and a delta on two table sizes.

Quick mode: an initial run of 100,000 applications; full mode: 1,000,000. Events are generated
inside Postgres (``generate_series`` + ``jsonb_build_object``, simulator-shaped payloads of about
1.5 KB) and inserted straight into the landing ``events`` table, each chunk's statement also
upserting the run's ``sync_runs`` row as ``land_events`` would (``first_seq``, received times,
``record_events``); the run's ``sync.events.processed``/``allConsumed`` then go through
``land_events`` itself, which sets the counts and ``all_consumed_at``. (Passing a million payloads
through ``land_events``' arrays cost minutes: sorting and copying them, not the insert.)
The server is a fresh embedded Postgres with fsync on. Then:

- the same run's first applications are normalized by a straightforward per-row Python upsert
  (the baseline; a sample, since per-row cost does not depend on the run's size);
- a delta run of 1,000 changes (modified with a new stage, new, deleted) is normalized on top of
  the big tables, and the same delta on top of a 10,000-application setup: equal times show the
  cost follows the delta, not the table.

``python -m bench.bench_normalize [--full]`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from typing import Any

import psycopg2

from knit_devtools.embedded_postgres import EmbeddedPostgres
from knit_provider.landing.migrate import migrate
from knit_provider.normalize.apply import normalize_runs
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas, quote_ident

DELTA = 1_000
SMALL = 10_000
CHUNK = 200_000

# One chunk of record events of a run, built and inserted in one statement with its sync_runs row. Application k of the
# run is: 1..n the initial applications (record.new); for a delta (kind 'delta'), 60% modified
# (spread over the table, next stage), 20% new, 20% deleted.
_GENERATE = """
WITH g AS (
    SELECT i,
           CASE WHEN %(kind)s = 'initial' THEN 'record.new'
                WHEN i <= %(n)s * 6 / 10 THEN 'record.modified'
                WHEN i <= %(n)s * 8 / 10 THEN 'record.new'
                ELSE 'record.deleted' END AS event_type,
           CASE WHEN %(kind)s = 'initial' THEN i
                WHEN i <= %(n)s * 6 / 10 THEN (i * 7919) %% %(base)s + 1
                WHEN i <= %(n)s * 8 / 10 THEN %(base)s + i
                ELSE (i * 104729) %% %(base)s + 1 END AS app,
           %(version)s AS v
    FROM generate_series(%(lo)s, %(hi)s) i
), f AS (
    SELECT i, event_type, app, v,
           'app-' || app AS app_id,
           %(run_id)s || '-' || i AS event_id,
           CASE WHEN %(kind)s = 'initial' THEN 'initial_sync' ELSE 'delta_sync' END AS sync_type,
           'cand-' || (app * 4 / 5) AS cand_id,
           'job-' || (app %% 500) AS job_id,
           (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken'])[1 + app %% 8] AS first_name,
           (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth','Allen','Thompson'])[1 + app %% 7 + 1]
               AS last_name,
           (app + v) %% 6 AS stage,
           (ARRAY['ACTIVE','ACTIVE','ACTIVE','REJECTED','HIRED','NOT_SPECIFIED'])[1 + app %% 6] AS status,
           timestamp '2024-01-01' + (app %% 300000) * interval '1 minute' AS applied,
           timestamp '2024-01-01' + (app %% 300000) * interval '1 minute' + (v + 1) * interval '3 days' AS updated
    FROM g
), p AS (
    SELECT i, event_type, app_id, event_id, sync_type, jsonb_build_object(
        'eventId', event_id,
        'eventType', event_type,
        'syncType', sync_type,
        'syncDataType', 'ats_applications',
        'syncJobId', 'sj-bench',
        'syncRunId', %(run_id)s,
        'recordId', app_id,
        'eventData', CASE WHEN event_type = 'record.deleted'
            THEN jsonb_build_object('applicationId', app_id, 'candidateId', cand_id, 'jobId', job_id)
            ELSE jsonb_build_object(
            'info', jsonb_build_object(
                'id', app_id, 'status', status,
                'candidate', jsonb_build_object(
                    'id', cand_id, 'firstName', first_name, 'lastName', last_name,
                    'phones', jsonb_build_array(jsonb_build_object('type', 'MOBILE', 'phoneNumber',
                              '+1' || (2000000000 + app))),
                    'emails', jsonb_build_array(
                        jsonb_build_object('type', 'PERSONAL', 'email', lower(first_name) || '.' || app
                                           || '@example.com'),
                        jsonb_build_object('type', 'WORK', 'email', lower(last_name) || app || '@corp.example')),
                    'links', jsonb_build_array('https://www.linkedin.com/in/' || lower(first_name) || '-' || app),
                    'location', jsonb_build_object('city', 'Berlin', 'state', NULL, 'country', 'DE',
                                                   'zipCode', '10115')),
                'origin', (ARRAY['AGENCY','REFERRAL','EXTERNAL','NOT_SPECIFIED'])[1 + app %% 4],
                'appliedAt', to_char(applied, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'updatedAt', to_char(updated, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'jobId', job_id, 'jobTitle', 'Senior Software Engineer',
                'owner', jsonb_build_object('id', '91000' || app %% 50, 'email',
                                            'recruiter' || app %% 50 || '@corp.example', 'employeeId', NULL),
                'creditedTo', NULL),
            'currentStage', jsonb_build_object('id', 'st-' || stage, 'name',
                (ARRAY['Applied','Phone screen','Onsite','Offer','Hired','Archived'])[1 + stage]),
            'interviews', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'id', app_id || '-iv' || k, 'subject', 'Technical interview ' || k,
                    'scheduledStart', to_char(applied + k * interval '2 days', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                    'scheduledEnd', to_char(applied + k * interval '2 days' + interval '1 hour',
                                            'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                    'status', 'SCHEDULED', 'location', NULL,
                    'interviewers', jsonb_build_array(jsonb_build_object(
                        'id', '91000' || k, 'email', 'interviewer' || k || '@corp.example', 'employeeId', NULL))
                )), '[]'::jsonb) FROM generate_series(1, app %% 3) k),
            'rejection', CASE WHEN status = 'REJECTED' THEN jsonb_build_object(
                'id', app_id || '-rj', 'reason', 'Not a fit for the role',
                'rejectedAt', to_char(updated, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) END,
            'offers', CASE WHEN status = 'HIRED' THEN jsonb_build_array(jsonb_build_object(
                'id', app_id || '-of1', 'status', 'ACCEPTED',
                'createdAt', to_char(updated, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'sentAt', NULL, 'closedAt', NULL,
                'startDate', to_char(updated + interval '30 days', 'YYYY-MM-DD'))) ELSE '[]'::jsonb END,
            'attachments', jsonb_build_array(jsonb_build_object(
                'id', app_id || '-at1', 'type', 'RESUME', 'name', 'resume_' || app_id || '.pdf',
                'link', 'https://files.corp.example/attachments/' || app_id || '/1?expires=1712345678'
                        || '&signature=' || md5(app_id))))
            END) AS payload
    FROM f
)
, ins AS (
    INSERT INTO {landing}.events (event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id,
                                  record_id, integration_id, payload)
    -- Each output column is its own expression: reading eventId back out of the payload would
    -- build every payload once per reference.
    SELECT event_id, event_type, sync_type, 'ats_applications', 'sj-bench',
           %(run_id)s, app_id, 'int-bench', payload
    FROM p
    RETURNING seq, sync_type, received_at
)
-- The run's row as land_events keeps it: first_seq and received times span every chunk, and
-- record_events counts the landed record events.
INSERT INTO {landing}.sync_runs AS r (sync_run_id, sync_job_id, integration_id, sync_data_type, sync_type,
                                      first_seq, first_received_at, last_received_at, record_events)
SELECT %(run_id)s, 'sj-bench', 'int-bench', 'ats_applications', min(sync_type), min(seq), min(received_at),
       max(received_at), count(*)
FROM ins
ON CONFLICT (sync_run_id) DO UPDATE SET
    first_seq = least(r.first_seq, excluded.first_seq),
    first_received_at = least(r.first_received_at, excluded.first_received_at),
    last_received_at = greatest(r.last_received_at, excluded.last_received_at),
    record_events = r.record_events + excluded.record_events
"""

_COMPLETE = """
SELECT {landing}.land_events(
    ARRAY[%(run_id)s || '-processed', %(run_id)s || '-all-consumed'],
    ARRAY['sync.events.processed', 'sync.events.allConsumed'],
    ARRAY['delta_sync', 'delta_sync'], ARRAY['ats_applications', 'ats_applications'],
    ARRAY['sj-bench', 'sj-bench'], ARRAY[%(run_id)s, %(run_id)s]::text[], ARRAY[NULL, NULL]::text[],
    ARRAY['int-bench', 'int-bench'],
    ARRAY[jsonb_build_object('eventData', jsonb_build_object('processed', %(n)s::text, 'emitted', %(n)s::text,
                             'startedAt', '1712000000000', 'complete', true)),
          jsonb_build_object('eventData', jsonb_build_object('processed', %(n)s::text, 'emitted', %(n)s::text,
                             'consumed', %(n)s::text, 'startedAt', '1712000000000', 'complete', true))])
"""


def land_run(conn: Any, schemas: Schemas, run_id: str, n: int, *, kind: str, base: int = 0, version: int = 0) -> None:
    """Generate and land a complete run of ``n`` record events (``kind`` 'initial' or 'delta')."""
    generate = _GENERATE.replace("{landing}", quote_ident(schemas.landing))
    for lo in range(1, n + 1, CHUNK):
        with conn, conn.cursor() as cur:
            cur.execute(
                generate,
                {
                    "kind": kind,
                    "n": n,
                    "base": base,
                    "version": version,
                    "run_id": run_id,
                    "lo": lo,
                    "hi": min(lo + CHUNK - 1, n),
                },
            )
    with conn, conn.cursor() as cur:
        cur.execute(_COMPLETE.replace("{landing}", quote_ident(schemas.landing)), {"run_id": run_id, "n": n})


def vacuum_analyze(url: str, schemas: Schemas, *, target: bool = False) -> None:
    """What autovacuum would have done by the time a run is normalized (hint bits, statistics).

    ``target`` also settles the normalized tables, so a timed delta does not share the CPU with
    autovacuum still digesting the initial run.
    """
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"VACUUM (ANALYZE) {quote_ident(schemas.landing)}.events")
        cur.execute(f"VACUUM (ANALYZE) {quote_ident(schemas.landing)}.sync_runs")
        if target:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schemas.target,))
            for (table,) in cur.fetchall():
                cur.execute(f"VACUUM (ANALYZE) {quote_ident(schemas.target)}.{quote_ident(table)}")
    conn.close()


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


_BASELINE_APP = """
INSERT INTO {t}.ats_applications AS r (integration_id, application_id, candidate_id, job_id, status, origin,
    applied_at, updated_at, current_stage_id, current_stage_name, rejection_reason, rejected_at, owner_id,
    owner_email, is_deleted, deleted_at, models, version_run_id, version_first_seq, version_seq,
    version_event_id, data_run_id, data_first_seq, data_seq, data_event_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (integration_id, application_id) DO UPDATE SET
    candidate_id = excluded.candidate_id, job_id = excluded.job_id, status = excluded.status,
    origin = excluded.origin, applied_at = excluded.applied_at, updated_at = excluded.updated_at,
    current_stage_id = excluded.current_stage_id, current_stage_name = excluded.current_stage_name,
    rejection_reason = excluded.rejection_reason, rejected_at = excluded.rejected_at,
    owner_id = excluded.owner_id, owner_email = excluded.owner_email, is_deleted = excluded.is_deleted,
    deleted_at = excluded.deleted_at, models = excluded.models, version_run_id = excluded.version_run_id,
    version_first_seq = excluded.version_first_seq, version_seq = excluded.version_seq,
    version_event_id = excluded.version_event_id, data_run_id = excluded.data_run_id,
    data_first_seq = excluded.data_first_seq, data_seq = excluded.data_seq, data_event_id = excluded.data_event_id
WHERE (excluded.version_first_seq, excluded.version_seq) > (r.version_first_seq, r.version_seq)
RETURNING 1
"""

_BASELINE_HISTORY = """
DELETE FROM {t}.ats_application_stage_history WHERE integration_id = %(i)s AND application_id = %(a)s;
INSERT INTO {t}.ats_application_stage_history
SELECT integration_id, application_id, row_number() OVER w, stage_id, stage_name, observed_at,
       lead(observed_at) OVER w, first_seq, seq
FROM (SELECT *, lag(coalesce(stage_id, stage_name)) OVER (ORDER BY first_seq, seq) AS prev
      FROM {t}.ats_application_versions
      WHERE integration_id = %(i)s AND application_id = %(a)s AND coalesce(stage_id, stage_name) IS NOT NULL) v
WHERE prev IS DISTINCT FROM coalesce(stage_id, stage_name)
WINDOW w AS (ORDER BY first_seq, seq)
"""


def baseline_normalize(conn: Any, schemas: Schemas, run_id: str, limit: int) -> int:
    """The straightforward way: read events in Python and upsert each application row by row."""
    t, landing = quote_ident(schemas.target), quote_ident(schemas.landing)
    app_sql, history_sql = _BASELINE_APP.replace("{t}", t), _BASELINE_HISTORY.replace("{t}", t)
    done = 0
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT first_seq, started_at FROM {landing}.sync_runs WHERE sync_run_id = %s", (run_id,))
        first_seq, started_at = cur.fetchone()
        # It keeps the change feed too, as the runner does: the rows it writes carry this change's value.
        cur.execute(f"SELECT {t}.knit_begin_change()")
        events = conn.cursor("baseline_events")
        events.itersize = 1000
        events.execute(
            f"SELECT seq, event_id, event_type, integration_id, record_id, payload, received_at "
            f"FROM {landing}.events WHERE sync_run_id = %s AND event_type LIKE 'record.%%' "
            "ORDER BY seq LIMIT %s",
            (run_id, limit),
        )
        for seq, event_id, event_type, integration, app_id, payload, received_at in events:
            data = payload.get("eventData") or {}
            info, stage = _get(data, "info") or {}, _get(data, "currentStage") or {}
            candidate = _get(info, "candidate") or {}
            deleted = event_type == "record.deleted"
            observed = _ts(info.get("updatedAt")) or started_at or received_at
            cur.execute(
                app_sql,
                (
                    integration,
                    app_id,
                    candidate.get("id"),
                    info.get("jobId"),
                    info.get("status"),
                    info.get("origin"),
                    _ts(info.get("appliedAt")),
                    _ts(info.get("updatedAt")),
                    stage.get("id"),
                    stage.get("name") or stage.get("text"),
                    _get(data, "rejection", "reason"),
                    _ts(_get(data, "rejection", "rejectedAt")),
                    _get(info, "owner", "id"),
                    _get(info, "owner", "email"),
                    deleted,
                    observed if deleted else None,
                    json.dumps(data),
                    run_id,
                    first_seq,
                    seq,
                    event_id,
                    None if deleted else run_id,
                    None if deleted else first_seq,
                    None if deleted else seq,
                    None if deleted else event_id,
                ),
            )
            if cur.fetchone() and not deleted:
                key = (integration, app_id)
                for table in ("interviews", "offers", "attachments"):
                    cur.execute(
                        f"DELETE FROM {t}.ats_application_{table} WHERE integration_id = %s AND application_id = %s",
                        key,
                    )
                for pos, iv in enumerate(data.get("interviews") or [], 1):
                    cur.execute(
                        f"INSERT INTO {t}.ats_application_interviews VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                        (
                            *key,
                            pos,
                            iv.get("id"),
                            iv.get("subject"),
                            _ts(iv.get("scheduledStart")),
                            _ts(iv.get("scheduledEnd")),
                            iv.get("status"),
                            json.dumps(iv.get("interviewers")),
                            json.dumps(iv),
                        ),
                    )
                for pos, of in enumerate(data.get("offers") or [], 1):
                    cur.execute(
                        f"INSERT INTO {t}.ats_application_offers VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                        (
                            *key,
                            pos,
                            of.get("id"),
                            of.get("status"),
                            _ts(of.get("createdAt")),
                            _ts(of.get("sentAt")),
                            _ts(of.get("closedAt")),
                            _ts(of.get("startDate")),
                            json.dumps(of),
                        ),
                    )
                for pos, at in enumerate(data.get("attachments") or [], 1):
                    cur.execute(
                        f"INSERT INTO {t}.ats_application_attachments VALUES (%s,%s,%s,%s,%s,%s)",
                        (*key, pos, at.get("type"), at.get("name"), at.get("link")),
                    )
            if candidate.get("id"):
                emails = candidate.get("emails") or []
                cur.execute(
                    f"INSERT INTO {t}.ats_candidates AS r VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    "ON CONFLICT (integration_id, candidate_id) DO UPDATE SET first_name = excluded.first_name, "
                    "last_name = excluded.last_name, email = excluded.email, emails = excluded.emails, "
                    "phones = excluded.phones, links = excluded.links, location = excluded.location, "
                    "application_id = excluded.application_id, version_run_id = excluded.version_run_id, "
                    "version_first_seq = excluded.version_first_seq, version_seq = excluded.version_seq, "
                    "version_event_id = excluded.version_event_id "
                    "WHERE (excluded.version_first_seq, excluded.version_seq) > (r.version_first_seq, r.version_seq)",
                    (
                        integration,
                        candidate["id"],
                        candidate.get("firstName"),
                        candidate.get("lastName"),
                        emails[0].get("email") if emails else None,
                        json.dumps(emails),
                        json.dumps(candidate.get("phones")),
                        json.dumps(candidate.get("links")),
                        json.dumps(candidate.get("location")),
                        app_id,
                        run_id,
                        first_seq,
                        seq,
                        event_id,
                    ),
                )
            cur.execute(
                f"INSERT INTO {t}.ats_application_versions VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT DO NOTHING",
                (
                    integration,
                    app_id,
                    first_seq,
                    seq,
                    run_id,
                    event_id,
                    event_type,
                    None if deleted else stage.get("id"),
                    None if deleted else (stage.get("name") or stage.get("text")),
                    observed,
                ),
            )
            cur.execute(history_sql, {"i": integration, "a": app_id})
            done += 1
        cur.execute(f"SELECT {t}.knit_finish_change()")
    return done


def timed_normalize(conn: Any, schemas: Schemas, run_id: str) -> float:
    with conn, conn.cursor() as cur:
        cur.execute("CHECKPOINT")  # start each measurement with no earlier write-back pending
    started = time.perf_counter()
    normalize_runs(conn, [run_id], schemas)
    return time.perf_counter() - started


def run(full: bool = False) -> dict[str, Any]:
    """Measure everything on a fresh server; return the flat figures."""
    applications = 1_000_000 if full else 100_000
    baseline_sample = 20_000 if full else 5_000
    big = Schemas(landing="bench_landing", target="bench")
    small = Schemas(landing="small_landing", target="small")
    baseline = Schemas(landing="bench_landing", target="baseline")
    result: dict[str, Any] = {
        "benchmark": "normalize",
        "mode": "full" if full else "quick",
        "applications": applications,
    }
    with EmbeddedPostgres(fsync=True) as pg:
        url = pg.create_database("bench_normalize")
        conn = psycopg2.connect(url)
        try:
            for schemas in (big, small):
                migrate(conn, schemas)
            started = time.perf_counter()
            land_run(conn, big, "sr-initial", applications, kind="initial")
            result["generate_seconds"] = round(time.perf_counter() - started, 1)
            vacuum_analyze(url, big)
            with conn, conn.cursor() as cur:
                cur.execute(
                    f"SELECT avg(pg_column_size(payload))::int FROM {quote_ident(big.landing)}.events WHERE seq <= 1000"
                )
                result["payload_avg_bytes"] = cur.fetchone()[0]

            seconds = timed_normalize(conn, big, "sr-initial")
            result["initial_seconds"] = round(seconds, 2)
            result["initial_apps_per_s"] = round(applications / seconds)

            ensure_schema(conn, baseline)
            started = time.perf_counter()
            done = baseline_normalize(conn, baseline, "sr-initial", baseline_sample)
            base_seconds = time.perf_counter() - started
            result["baseline_apps"] = done
            result["baseline_seconds"] = round(base_seconds, 2)
            result["baseline_apps_per_s"] = round(done / base_seconds)
            result["speedup_vs_baseline"] = round(result["initial_apps_per_s"] / result["baseline_apps_per_s"], 1)

            result["replay_seconds"] = round(timed_normalize(conn, big, "sr-initial"), 2)

            land_run(conn, big, "sr-delta", DELTA, kind="delta", base=applications, version=1)
            vacuum_analyze(url, big, target=True)
            result["delta_changes"] = DELTA
            result["delta_seconds_big"] = round(timed_normalize(conn, big, "sr-delta"), 3)

            land_run(conn, small, "sr-small-initial", SMALL, kind="initial")
            vacuum_analyze(url, small)
            result["small_initial_apps_per_s"] = round(SMALL / timed_normalize(conn, small, "sr-small-initial"))
            land_run(conn, small, "sr-small-delta", DELTA, kind="delta", base=SMALL, version=1)
            vacuum_analyze(url, small, target=True)
            result["delta_seconds_small"] = round(timed_normalize(conn, small, "sr-small-delta"), 3)
            result["delta_big_over_small"] = round(result["delta_seconds_big"] / result["delta_seconds_small"], 2)
        finally:
            conn.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_normalize", description=__doc__)
    parser.add_argument("--full", action="store_true", help="1,000,000 applications instead of 100,000")
    args = parser.parse_args()
    print(json.dumps(run(full=args.full)), flush=True)


if __name__ == "__main__":
    main()
