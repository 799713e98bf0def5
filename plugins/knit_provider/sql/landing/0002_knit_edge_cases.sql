-- What real Knit sends beyond our first guesses (issue 17):
--   * a run is complete when allConsumed lands OR when its final processed report (complete: true)
--     says emitted: 0 (Knit always sends processed; it does not promise allConsumed when there was
--     nothing to emit). complete_at/complete_seq are that one definition; every reader uses them;
--   * '' in an envelope id means absent (Knit's record.deleted sample carries empty ids);
--   * X-Knit-Execution-Id is kept with each event (Knit's support asks for it);
--   * dead letters are deduplicated by body (Knit retries a non-200 for days; an authentic body that
--     cannot be used is now answered 200 once stored, but older receivers stored one row per attempt),
--     and carry the ids that could be read, so reconciliation can name a run's dead letters.
-- Runs on a populated store: every step keeps what is there.

ALTER TABLE {landing}.events ADD COLUMN IF NOT EXISTS execution_id text;

ALTER TABLE {landing}.sync_runs
    ADD COLUMN IF NOT EXISTS complete_at  timestamptz,
    ADD COLUMN IF NOT EXISTS complete_seq bigint,
    -- 'allConsumed' or 'processed' (a final processed report with emitted = 0).
    ADD COLUMN IF NOT EXISTS completed_by text;

-- Runs completed before this migration: by allConsumed, or by a final processed report that emitted
-- nothing, whichever landed first (the smaller seq), exactly as land_events decides from now on.
UPDATE {landing}.sync_runs AS r
SET complete_at  = CASE WHEN p.seq IS NOT NULL AND (r.all_consumed_seq IS NULL OR p.seq < r.all_consumed_seq)
                        THEN p.received_at ELSE r.all_consumed_at END,
    complete_seq = CASE WHEN p.seq IS NOT NULL AND (r.all_consumed_seq IS NULL OR p.seq < r.all_consumed_seq)
                        THEN p.seq ELSE r.all_consumed_seq END,
    completed_by = CASE WHEN p.seq IS NOT NULL AND (r.all_consumed_seq IS NULL OR p.seq < r.all_consumed_seq)
                        THEN 'processed' ELSE 'allConsumed' END
FROM {landing}.sync_runs AS s
LEFT JOIN (
    SELECT DISTINCT ON (sync_run_id) sync_run_id, seq, received_at
    FROM {landing}.events
    WHERE event_type = 'sync.events.processed'
      AND payload -> 'eventData' ->> 'complete' = 'true'
      AND {landing}.try_bigint(payload -> 'eventData' ->> 'emitted') = 0
    ORDER BY sync_run_id, seq
) AS p USING (sync_run_id)
WHERE r.sync_run_id = s.sync_run_id AND r.complete_at IS NULL
  AND (r.all_consumed_seq IS NOT NULL OR p.seq IS NOT NULL);

DROP INDEX IF EXISTS {landing}.sync_runs_pending_idx;
-- Complete runs waiting for normalization (asset watcher, `normalize --pending`).
CREATE INDEX IF NOT EXISTS sync_runs_pending_complete_idx
    ON {landing}.sync_runs (sync_data_type, complete_at)
    WHERE complete_at IS NOT NULL AND normalized_at IS NULL;

ALTER TABLE {landing}.dead_letters
    ADD COLUMN IF NOT EXISTS body_sha256      bytea,
    ADD COLUMN IF NOT EXISTS attempts         integer NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS last_received_at timestamptz,
    ADD COLUMN IF NOT EXISTS event_id         text,
    ADD COLUMN IF NOT EXISTS event_type       text,
    ADD COLUMN IF NOT EXISTS sync_job_id      text,
    ADD COLUMN IF NOT EXISTS sync_run_id      text,
    -- Set by `dead-letters replay` once the body landed as an event (it stays here as evidence).
    ADD COLUMN IF NOT EXISTS replayed_at      timestamptz;

UPDATE {landing}.dead_letters SET body_sha256 = sha256(body) WHERE body_sha256 IS NULL;
UPDATE {landing}.dead_letters SET last_received_at = received_at WHERE last_received_at IS NULL;

-- Fold the rows one body left on every retry into its first row: attempts add up, first and last
-- seen span them all. (A data-modifying WITH runs to completion whether or not it is read.)
WITH groups AS (
    SELECT body_sha256, min(id) AS keep, sum(attempts)::integer AS attempts,
           min(received_at) AS first_seen, max(last_received_at) AS last_seen
    FROM {landing}.dead_letters
    GROUP BY body_sha256
    HAVING count(*) > 1
), merged AS (
    UPDATE {landing}.dead_letters AS d
    SET attempts = g.attempts, received_at = g.first_seen, last_received_at = g.last_seen
    FROM groups AS g
    WHERE d.id = g.keep
)
DELETE FROM {landing}.dead_letters AS d
USING groups AS g
WHERE d.body_sha256 = g.body_sha256 AND d.id <> g.keep;

-- The ids of dead letters stored before this migration, where the body is readable JSON.
CREATE OR REPLACE FUNCTION {landing}.try_jsonb(value bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN convert_from(value, 'UTF8')::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- An id is kept as the receiver reads it: a non-empty string or number of at most 512 characters
-- (a longer one, e.g. from a body dead-lettered for exactly that, would not fit the run index).
CREATE OR REPLACE FUNCTION {landing}.envelope_id(doc jsonb, key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(doc -> key) IN ('string', 'number') AND length(doc ->> key) BETWEEN 1 AND 512
                THEN doc ->> key END
$$;

UPDATE {landing}.dead_letters AS d
SET event_id    = {landing}.envelope_id(j.doc, 'eventId'),
    event_type  = {landing}.envelope_id(j.doc, 'eventType'),
    sync_job_id = {landing}.envelope_id(j.doc, 'syncJobId'),
    sync_run_id = {landing}.envelope_id(j.doc, 'syncRunId')
FROM (SELECT id, {landing}.try_jsonb(body) AS doc FROM {landing}.dead_letters WHERE sync_run_id IS NULL) AS j
WHERE d.id = j.id AND jsonb_typeof(j.doc) = 'object';

ALTER TABLE {landing}.dead_letters ALTER COLUMN body_sha256 SET NOT NULL;
ALTER TABLE {landing}.dead_letters ALTER COLUMN last_received_at SET NOT NULL;
ALTER TABLE {landing}.dead_letters ALTER COLUMN last_received_at SET DEFAULT clock_timestamp();
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_body_key ON {landing}.dead_letters (body_sha256);
CREATE INDEX IF NOT EXISTS dead_letters_run_idx ON {landing}.dead_letters (sync_run_id) WHERE sync_run_id IS NOT NULL;

-- Store a batch of dead letters: one row per distinct body, a repeat only counts an attempt and
-- refreshes the reason and last-seen time. Arrays are parallel. Returns how many bodies were new.
CREATE OR REPLACE FUNCTION {landing}.land_dead_letters(
    p_integration_ids text[],
    p_reasons         text[],
    p_headers         jsonb[],
    p_bodies          bytea[],
    p_event_ids       text[],
    p_event_types     text[],
    p_sync_job_ids    text[],
    p_sync_run_ids    text[]
) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    added bigint;
BEGIN
    WITH input AS (
        SELECT *, sha256(body) AS body_sha256
        FROM unnest(p_integration_ids, p_reasons, p_headers, p_bodies, p_event_ids, p_event_types,
                    p_sync_job_ids, p_sync_run_ids) WITH ORDINALITY
            AS t(integration_id, reason, headers, body, event_id, event_type, sync_job_id, sync_run_id, ord)
    ), grouped AS (
        -- The same body twice in one batch is one row (ON CONFLICT may touch a row only once).
        SELECT DISTINCT ON (body_sha256) body_sha256, integration_id, reason, headers, body,
               nullif(event_id, '') AS event_id, nullif(event_type, '') AS event_type,
               nullif(sync_job_id, '') AS sync_job_id, nullif(sync_run_id, '') AS sync_run_id,
               count(*) OVER (PARTITION BY body_sha256) AS attempts
        FROM input
        ORDER BY body_sha256, ord DESC
    ), upserted AS (
        INSERT INTO {landing}.dead_letters AS d
            (integration_id, reason, headers, body, body_sha256, attempts, event_id, event_type, sync_job_id,
             sync_run_id)
        SELECT integration_id, reason, headers, body, body_sha256, attempts, event_id, event_type, sync_job_id,
               sync_run_id
        FROM grouped
        ORDER BY body_sha256  -- one lock order for every writer
        ON CONFLICT (body_sha256) DO UPDATE SET
            attempts         = d.attempts + excluded.attempts,
            last_received_at = clock_timestamp(),
            reason           = excluded.reason,
            headers          = excluded.headers,
            integration_id   = coalesce(d.integration_id, excluded.integration_id),
            -- A row folded by this migration may lack ids a newer receiver reads (e.g. from a truncated body).
            event_id         = coalesce(d.event_id, excluded.event_id),
            event_type       = coalesce(d.event_type, excluded.event_type),
            sync_job_id      = coalesce(d.sync_job_id, excluded.sync_job_id),
            sync_run_id      = coalesce(d.sync_run_id, excluded.sync_run_id)
        RETURNING (xmax = 0) AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted) INTO added FROM upserted;
    RETURN added;
END
$fn$;

-- land_events gains execution ids (defaulted, so a caller with the nine arrays still works) and the
-- completion rule; the old nine-argument version is dropped so that calls are not ambiguous.
DROP FUNCTION IF EXISTS {landing}.land_events(text[], text[], text[], text[], text[], text[], text[], text[], jsonb[]);

CREATE OR REPLACE FUNCTION {landing}.land_events(
    p_event_ids       text[],
    p_event_types     text[],
    p_sync_types      text[],
    p_sync_data_types text[],
    p_sync_job_ids    text[],
    p_sync_run_ids    text[],
    p_record_ids      text[],
    p_integration_ids text[],
    p_payloads        jsonb[],
    p_execution_ids   text[] DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    landed bigint;
BEGIN
    WITH input AS (
        SELECT event_id, event_type, nullif(sync_type, '') AS sync_type,
               nullif(sync_data_type, '') AS sync_data_type, nullif(sync_job_id, '') AS sync_job_id,
               nullif(sync_run_id, '') AS sync_run_id, nullif(record_id, '') AS record_id,
               nullif(integration_id, '') AS integration_id, payload, nullif(execution_id, '') AS execution_id,
               ord
        FROM unnest(p_event_ids, p_event_types, p_sync_types, p_sync_data_types, p_sync_job_ids,
                    p_sync_run_ids, p_record_ids, p_integration_ids, p_payloads, p_execution_ids)
            -- A NULL p_execution_ids (a caller with nine arrays) is padded with NULLs, like any shorter array.
            WITH ORDINALITY AS t(event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id,
                                 record_id, integration_id, payload, execution_id, ord)
    ), ins AS (
        INSERT INTO {landing}.events AS e
            (event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id, record_id,
             integration_id, payload, execution_id)
        SELECT event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id, record_id,
               integration_id, payload, execution_id
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
    ), empty_final AS (
        -- A final processed report that emitted nothing: Knit may never send allConsumed for it.
        SELECT DISTINCT ON (sync_run_id) sync_run_id, seq, received_at
        FROM ins
        WHERE sync_run_id IS NOT NULL AND event_type = 'sync.events.processed'
          AND jsonb_typeof(data) = 'object' AND (data ->> 'complete') = 'true'
          AND {landing}.try_bigint(data ->> 'emitted') = 0
        ORDER BY sync_run_id, seq
    ), runs AS (
        INSERT INTO {landing}.sync_runs AS r
            (sync_run_id, sync_job_id, integration_id, sync_data_type, sync_type, first_seq,
             first_received_at, last_received_at, record_events, processed_count, emitted_count,
             consumed_count, processed_complete, counts_rank, started_at, processed_at, completed_at,
             all_consumed_at, all_consumed_seq, complete_at, complete_seq, completed_by)
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
               ac.received_at, ac.seq,
               -- Whichever completion landed first in arrival order (the smaller seq).
               CASE WHEN ef.seq IS NOT NULL AND (ac.seq IS NULL OR ef.seq < ac.seq) THEN ef.received_at
                    ELSE ac.received_at END,
               CASE WHEN ef.seq IS NOT NULL AND (ac.seq IS NULL OR ef.seq < ac.seq) THEN ef.seq
                    ELSE ac.seq END,
               CASE WHEN ef.seq IS NOT NULL AND (ac.seq IS NULL OR ef.seq < ac.seq) THEN 'processed'
                    WHEN ac.seq IS NOT NULL THEN 'allConsumed' END
        FROM batch_runs b
        LEFT JOIN counts c USING (sync_run_id)
        LEFT JOIN consumed ac USING (sync_run_id)
        LEFT JOIN empty_final ef USING (sync_run_id)
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
            all_consumed_seq  = coalesce(r.all_consumed_seq, excluded.all_consumed_seq),
            -- Complete once: the first completion to land stays (a run never becomes incomplete).
            complete_at       = coalesce(r.complete_at, excluded.complete_at),
            complete_seq      = coalesce(r.complete_seq, excluded.complete_seq),
            completed_by      = coalesce(r.completed_by, excluded.completed_by)
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
