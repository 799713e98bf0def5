-- Landing store: the system of record for everything Knit pushed.
-- Idempotent: every statement can run again on an existing schema.

CREATE SCHEMA IF NOT EXISTS {landing};

-- One row per distinct eventId, in arrival order (seq).
CREATE TABLE IF NOT EXISTS {landing}.events (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    sync_type       text,
    sync_data_type  text,
    sync_job_id     text,
    sync_run_id     text,
    record_id       text,
    integration_id  text,
    payload         jsonb       NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);
-- An application-sized envelope (2-4 kB) stays inline and uncompressed: compressing every payload
-- on insert costs the writer about a third of its time per event. Larger ones are still toasted.
ALTER TABLE {landing}.events SET (toast_tuple_target = 8160);

-- "The events of run R" (normalization, reconciliation, progress).
CREATE INDEX IF NOT EXISTS events_run_seq_idx ON {landing}.events (sync_run_id, seq);

-- "The run events of job J" (sync.events.*), small: a few rows per run.
CREATE INDEX IF NOT EXISTS events_job_run_events_idx
    ON {landing}.events (sync_job_id, seq)
    WHERE event_type LIKE 'sync.events.%';

-- One row per sync run, maintained by the writer in the same transaction as the run's events.
CREATE TABLE IF NOT EXISTS {landing}.sync_runs (
    sync_run_id        text PRIMARY KEY,
    sync_job_id        text,
    integration_id     text,
    sync_data_type     text,
    sync_type          text,
    -- The run's place in time: the seq of its first landed event. Versions are (first_seq, seq).
    first_seq          bigint      NOT NULL,
    -- When its first / latest event landed, on the database's clock (sensors compare against it).
    first_received_at  timestamptz NOT NULL,
    last_received_at   timestamptz NOT NULL,
    -- Distinct record.* events landed for the run (duplicates are not counted).
    record_events      bigint      NOT NULL DEFAULT 0,
    -- Knit's own figures from sync.events.processed / sync.events.allConsumed.
    processed_count    bigint,
    emitted_count      bigint,
    consumed_count     bigint,
    processed_complete boolean,
    -- Which event the counts came from: 1 processed, 2 processed with complete=true, 3 allConsumed.
    counts_rank        smallint    NOT NULL DEFAULT 0,
    started_at         timestamptz,
    processed_at       timestamptz,
    completed_at       timestamptz,
    -- When sync.events.allConsumed landed (database clock); NOT NULL means the run is complete.
    all_consumed_at    timestamptz,
    all_consumed_seq   bigint,
    -- Set by the asset-watcher trigger when it announced the run, and by normalization when done.
    announced_at       timestamptz,
    normalized_at      timestamptz
);

CREATE INDEX IF NOT EXISTS sync_runs_job_idx ON {landing}.sync_runs (sync_job_id, first_received_at);

-- Completed runs waiting for normalization (asset watcher, `normalize --pending`).
CREATE INDEX IF NOT EXISTS sync_runs_pending_idx
    ON {landing}.sync_runs (sync_data_type, all_consumed_at)
    WHERE all_consumed_at IS NOT NULL AND normalized_at IS NULL;

-- Signed bodies that could not be used: kept byte for byte with the reason.
CREATE TABLE IF NOT EXISTS {landing}.dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    integration_id  text,
    reason          text        NOT NULL,
    headers         jsonb       NOT NULL,
    body            bytea       NOT NULL
);

-- Knit sends counts and epoch-millisecond times as strings; a malformed one must never make a
-- batch fail (that would answer 503 to good events forever), so these return NULL instead.
CREATE OR REPLACE FUNCTION {landing}.try_bigint(value text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value ~ '^\s*-?[0-9]{1,18}(\.0+)?\s*$' THEN trunc(value::numeric)::bigint END
$$;

CREATE OR REPLACE FUNCTION {landing}.try_epoch_ms(value text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value ~ '^\s*[0-9]{1,15}(\.[0-9]*)?\s*$' THEN to_timestamp(value::numeric / 1000) END
$$;

-- Land a batch of parsed events in one statement: the events (duplicates by event_id are
-- ignored), their runs' rows in sync_runs, and a NOTIFY per landed run event, all in the
-- caller's transaction. Arrays are parallel, one element per event, in arrival order.
-- Returns the number of events that were new.
CREATE OR REPLACE FUNCTION {landing}.land_events(
    p_event_ids       text[],
    p_event_types     text[],
    p_sync_types      text[],
    p_sync_data_types text[],
    p_sync_job_ids    text[],
    p_sync_run_ids    text[],
    p_record_ids      text[],
    p_integration_ids text[],
    p_payloads        jsonb[]
) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    landed bigint;
BEGIN
    WITH input AS (
        SELECT * FROM unnest(p_event_ids, p_event_types, p_sync_types, p_sync_data_types, p_sync_job_ids,
                             p_sync_run_ids, p_record_ids, p_integration_ids, p_payloads)
            WITH ORDINALITY AS t(event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id,
                                 record_id, integration_id, payload, ord)
    ), ins AS (
        INSERT INTO {landing}.events AS e
            (event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id, record_id,
             integration_id, payload)
        SELECT event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id, record_id,
               integration_id, payload
        FROM input ORDER BY ord
        ON CONFLICT (event_id) DO NOTHING
        RETURNING e.seq, e.event_type, e.sync_type, e.sync_data_type, e.sync_job_id, e.sync_run_id,
                  e.integration_id, e.received_at,
                  -- Only run events' counts are read below; carrying every payload would copy it.
                  CASE WHEN e.event_type IN ('sync.events.processed', 'sync.events.allConsumed')
                       THEN e.payload -> 'eventData' END AS data
    ), batch_runs AS (
        SELECT sync_run_id,
               min(sync_job_id) AS sync_job_id,
               min(integration_id) AS integration_id,
               min(sync_data_type) AS sync_data_type,
               min(sync_type) AS sync_type,
               min(seq) AS first_seq,
               min(received_at) AS first_received_at,
               max(received_at) AS last_received_at,
               count(*) FILTER (WHERE event_type IN ('record.new', 'record.modified', 'record.deleted'))
                   AS record_events
        FROM ins WHERE sync_run_id IS NOT NULL
        GROUP BY sync_run_id
    ), counts AS (
        -- The most final report of the batch per run: allConsumed, then a complete processed.
        SELECT DISTINCT ON (sync_run_id)
               sync_run_id, seq, received_at, event_type, data AS d,
               CASE WHEN event_type = 'sync.events.allConsumed' THEN 3
                    WHEN (data ->> 'complete') = 'true' THEN 2
                    ELSE 1 END AS rank
        FROM ins
        WHERE sync_run_id IS NOT NULL
          AND event_type IN ('sync.events.processed', 'sync.events.allConsumed')
          AND jsonb_typeof(data) = 'object'
        ORDER BY sync_run_id, rank DESC, seq DESC
    ), consumed AS (
        SELECT DISTINCT ON (sync_run_id) sync_run_id, seq, received_at
        FROM ins WHERE sync_run_id IS NOT NULL AND event_type = 'sync.events.allConsumed'
        ORDER BY sync_run_id, seq
    ), runs AS (
        INSERT INTO {landing}.sync_runs AS r
            (sync_run_id, sync_job_id, integration_id, sync_data_type, sync_type, first_seq,
             first_received_at, last_received_at, record_events, processed_count, emitted_count,
             consumed_count, processed_complete, counts_rank, started_at, processed_at, completed_at,
             all_consumed_at, all_consumed_seq)
        SELECT b.sync_run_id, b.sync_job_id, b.integration_id, b.sync_data_type, b.sync_type, b.first_seq,
               b.first_received_at, b.last_received_at, b.record_events,
               {landing}.try_bigint(c.d ->> 'processed'),
               {landing}.try_bigint(c.d ->> 'emitted'),
               {landing}.try_bigint(c.d ->> 'consumed'),
               (c.d ->> 'complete') = 'true',
               coalesce(c.rank, 0),
               {landing}.try_epoch_ms(c.d ->> 'startedAt'),
               {landing}.try_epoch_ms(c.d ->> 'processedAt'),
               {landing}.try_epoch_ms(c.d ->> 'completedAt'),
               ac.received_at, ac.seq
        FROM batch_runs b
        LEFT JOIN counts c USING (sync_run_id)
        LEFT JOIN consumed ac USING (sync_run_id)
        ORDER BY b.sync_run_id  -- one lock order for every writer: concurrent batches cannot deadlock here
        ON CONFLICT (sync_run_id) DO UPDATE SET
            sync_job_id       = coalesce(r.sync_job_id, excluded.sync_job_id),
            integration_id    = coalesce(r.integration_id, excluded.integration_id),
            sync_data_type    = coalesce(r.sync_data_type, excluded.sync_data_type),
            sync_type         = coalesce(r.sync_type, excluded.sync_type),
            first_seq         = least(r.first_seq, excluded.first_seq),
            first_received_at = least(r.first_received_at, excluded.first_received_at),
            last_received_at  = greatest(r.last_received_at, excluded.last_received_at),
            record_events     = r.record_events + excluded.record_events,
            processed_count   = CASE WHEN excluded.counts_rank >= r.counts_rank AND excluded.counts_rank > 0
                                     THEN excluded.processed_count ELSE r.processed_count END,
            emitted_count     = CASE WHEN excluded.counts_rank >= r.counts_rank AND excluded.counts_rank > 0
                                     THEN excluded.emitted_count ELSE r.emitted_count END,
            consumed_count    = CASE WHEN excluded.counts_rank >= r.counts_rank AND excluded.counts_rank > 0
                                     THEN excluded.consumed_count ELSE r.consumed_count END,
            processed_complete = CASE WHEN excluded.counts_rank >= r.counts_rank AND excluded.counts_rank > 0
                                     THEN excluded.processed_complete ELSE r.processed_complete END,
            counts_rank       = greatest(r.counts_rank, excluded.counts_rank),
            started_at        = coalesce(excluded.started_at, r.started_at),
            processed_at      = coalesce(excluded.processed_at, r.processed_at),
            completed_at      = coalesce(excluded.completed_at, r.completed_at),
            all_consumed_at   = coalesce(r.all_consumed_at, excluded.all_consumed_at),
            all_consumed_seq  = coalesce(r.all_consumed_seq, excluded.all_consumed_seq)
        RETURNING 1
    ), notified AS (
        SELECT pg_notify('{notify_channel}', json_build_object(
                   'sync_job_id', sync_job_id, 'sync_run_id', sync_run_id,
                   'event_type', event_type, 'seq', seq)::text)
        FROM ins WHERE event_type LIKE 'sync.events.%'
    )
    SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM runs) + 0 * (SELECT count(*) FROM notified)
    INTO landed;
    RETURN landed;
END
$fn$;
