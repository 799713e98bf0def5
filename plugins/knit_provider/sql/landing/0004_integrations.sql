-- The integration registry (issue 16): one row per integration the landing store has heard of, so that
-- nobody types integration ids. Knit's users' customers connect their ATS at any time; Knit then sends
-- app.integration.activate ("fired after an integration validation is complete; payload may contain
-- validation errors; if it doesn't, use this event as a trigger for starting data syncs").
--   * land_events keeps the registry in the same statement that lands a batch: one upsert per
--     integration of the batch, not per event, after the sync_runs upsert (one lock order for every
--     writer: event_ids, sync_runs, integrations, each sorted by key);
--   * any order, idempotent: the newest activation wins by (activated_at, event id), whenever it lands;
--     the last run is the one that started last (sync_runs.first_seq); first/last seen are min/max;
--   * state is derived, never written: disabled by the user (until enabled), else the last
--     activation's outcome, else seen only through syncs;
--   * activations NOTIFY on knit_sync_events like run events, so the onboarding watcher wakes at once.
-- Back-fills from what is stored; activations stored before this migration count as announced (the
-- onboarding DAG must not start initial syncs for integrations synced long ago).

CREATE TABLE IF NOT EXISTS {landing}.integrations (
    integration_id         text PRIMARY KEY,
    -- When its first / latest event landed (database clock), and the latest one's type.
    first_seen_at          timestamptz NOT NULL,
    last_event_at          timestamptz NOT NULL,
    last_event_type        text,
    -- Its latest activation (by activated_at, then event id): Knit's time when the payload carries one
    -- (eventData.activatedAt, epoch ms: a guess), else when it landed.
    activated_at           timestamptz,
    activation_event_id    text,
    activation_seq         bigint,
    -- That activation's validation errors as Knit sent them; NULL when it had none.
    validation_errors      jsonb,
    -- The run that started last (largest sync_runs.first_seq), and when its first event landed.
    last_sync_run_id       text,
    last_sync_run_seq      bigint,
    last_sync_run_at       timestamptz,
    -- `python -m knit_provider integrations disable`: left alone by every event until `enable`.
    disabled_at            timestamptz,
    -- The activation the onboarding watcher announced last (announced_seq = activation_seq: done).
    announced_seq          bigint,
    announced_at           timestamptz,
    -- The onboarding DAG's claim: one initial sync at a time per integration (see onboarding_claim.sql).
    onboarding_claimed_at  timestamptz,
    onboarding_dag_run_id  text,
    onboarded_at           timestamptz,
    onboarding_sync_run_id text,
    state text GENERATED ALWAYS AS (
        CASE WHEN disabled_at IS NOT NULL THEN 'disabled'
             WHEN activation_event_id IS NULL THEN 'seen_only_through_syncs'
             WHEN validation_errors IS NOT NULL THEN 'failed_validation'
             ELSE 'active' END
    ) STORED
);

-- What the onboarding watcher looks for: activations not announced yet.
CREATE INDEX IF NOT EXISTS integrations_unannounced_idx ON {landing}.integrations (activated_at)
    WHERE activation_seq IS NOT NULL AND announced_seq IS DISTINCT FROM activation_seq;

-- The validation errors of an activation's eventData, or NULL when it reports none. Knit documents only
-- that the payload "may contain validation errors"; the key `errors` is the simulator's guess, and an
-- empty value (null, [], {}, "") counts as none. The one place to change when Knit's shape is known.
CREATE OR REPLACE FUNCTION {landing}.activation_errors(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(data) <> 'object' THEN NULL
                WHEN data -> 'errors' IN ('null'::jsonb, '[]'::jsonb, '{}'::jsonb, '""'::jsonb) THEN NULL
                ELSE data -> 'errors' END
$$;

-- Back-fill: runs first (first seen, last event, last run), then activations from the stored events.
INSERT INTO {landing}.integrations AS i
    (integration_id, first_seen_at, last_event_at, last_sync_run_id, last_sync_run_seq, last_sync_run_at)
SELECT DISTINCT ON (integration_id) integration_id,
       min(first_received_at) OVER w, max(last_received_at) OVER w, sync_run_id, first_seq, first_received_at
FROM {landing}.sync_runs
WHERE integration_id IS NOT NULL
WINDOW w AS (PARTITION BY integration_id)
ORDER BY integration_id, first_seq DESC
ON CONFLICT (integration_id) DO NOTHING;

WITH activations AS (
    SELECT coalesce(integration_id, {landing}.envelope_id(payload -> 'eventData', 'integrationId')) AS integration_id,
           event_id, seq, received_at,
           coalesce({landing}.try_epoch_ms(payload -> 'eventData' ->> 'activatedAt'), received_at) AS activated_at,
           {landing}.activation_errors(payload -> 'eventData') AS errors
    FROM {landing}.events
    WHERE event_type = 'app.integration.activate'
), latest AS (
    SELECT DISTINCT ON (integration_id) *,
           min(received_at) OVER (PARTITION BY integration_id) AS first_at,
           max(received_at) OVER (PARTITION BY integration_id) AS last_at
    FROM activations
    WHERE integration_id IS NOT NULL
    ORDER BY integration_id, activated_at DESC, event_id DESC
)
INSERT INTO {landing}.integrations AS i
    (integration_id, first_seen_at, last_event_at, last_event_type, activated_at, activation_event_id,
     activation_seq, validation_errors, announced_seq, announced_at)
SELECT integration_id, first_at, last_at, 'app.integration.activate', activated_at, event_id, seq, errors, seq, now()
FROM latest
ORDER BY integration_id
ON CONFLICT (integration_id) DO UPDATE SET
    first_seen_at       = least(i.first_seen_at, excluded.first_seen_at),
    last_event_at       = greatest(i.last_event_at, excluded.last_event_at),
    activated_at        = excluded.activated_at,
    activation_event_id = excluded.activation_event_id,
    activation_seq      = excluded.activation_seq,
    validation_errors   = excluded.validation_errors,
    announced_seq       = excluded.announced_seq,
    announced_at        = excluded.announced_at;

-- Whether activation (at, id) is newer than the stored (stored_at, stored_id); any activation beats none.
CREATE OR REPLACE FUNCTION {landing}.activation_is_newer(at timestamptz, id text, stored_at timestamptz, stored_id text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT id IS NOT NULL AND (stored_id IS NULL OR (at, id) > (stored_at, stored_id))
$$;

-- land_events keeps its ten arrays and what it returns; it now also keeps the registry, and announces
-- activations on the channel as it announces run events.
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
    ), fresh AS (
        -- Sorted by id: one lock order for every writer, so two batches sharing ids cannot deadlock.
        INSERT INTO {landing}.event_ids AS k (event_id)
        SELECT DISTINCT event_id FROM input ORDER BY event_id
        ON CONFLICT (event_id) DO NOTHING
        RETURNING k.event_id
    ), ins AS (
        INSERT INTO {landing}.events AS e
            (event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id, record_id,
             integration_id, payload, execution_id)
        SELECT event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id, record_id,
               integration_id, payload, execution_id
        FROM (SELECT DISTINCT ON (i.event_id) i.*
              FROM input i JOIN fresh f USING (event_id)
              ORDER BY i.event_id, i.ord) AS first_seen
        ORDER BY ord
        RETURNING e.seq, e.event_id, e.event_type, e.sync_type, e.sync_data_type, e.sync_job_id, e.sync_run_id,
                  e.integration_id, e.received_at,
                  -- Only run events' counts and activations are read below; carrying every payload would copy it.
                  CASE WHEN e.event_type IN ('sync.events.processed', 'sync.events.allConsumed',
                                             'app.integration.activate')
                       THEN e.payload -> 'eventData' END AS data,
                  -- The registry's key: the X-Knit-Integration-Id header, else (activations) eventData's.
                  coalesce(e.integration_id,
                           CASE WHEN e.event_type = 'app.integration.activate'
                                THEN {landing}.envelope_id(e.payload -> 'eventData', 'integrationId') END)
                      AS registry_id
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
        RETURNING r.sync_run_id, r.integration_id, r.first_seq, r.first_received_at
    ), seen AS (
        -- The registry is updated once per integration of the batch, whatever the batch's size.
        -- (The last event's type is looked up by its seq below: an ordered aggregate here, sorting the whole
        -- batch, made landing about 8% slower in the ingest micro-benchmark.)
        SELECT registry_id AS integration_id, min(received_at) AS first_at, max(received_at) AS last_at,
               max(seq) AS last_seq
        FROM ins WHERE registry_id IS NOT NULL
        GROUP BY registry_id
    ), activations AS (
        SELECT DISTINCT ON (registry_id) registry_id AS integration_id, event_id, seq,
               coalesce({landing}.try_epoch_ms(data ->> 'activatedAt'), received_at) AS activated_at,
               {landing}.activation_errors(data) AS errors
        FROM ins WHERE registry_id IS NOT NULL AND event_type = 'app.integration.activate'
        ORDER BY registry_id, activated_at DESC, event_id DESC
    ), last_runs AS (
        -- The runs as they stand after this batch: a late event of an old run does not make it the last.
        SELECT DISTINCT ON (integration_id) integration_id, sync_run_id, first_seq, first_received_at
        FROM runs WHERE integration_id IS NOT NULL
        ORDER BY integration_id, first_seq DESC
    ), registry AS (
        INSERT INTO {landing}.integrations AS i
            (integration_id, first_seen_at, last_event_at, last_event_type, activated_at, activation_event_id,
             activation_seq, validation_errors, last_sync_run_id, last_sync_run_seq, last_sync_run_at)
        SELECT s.integration_id, s.first_at, s.last_at, last_event.event_type, a.activated_at, a.event_id, a.seq,
               a.errors, l.sync_run_id, l.first_seq, l.first_received_at
        FROM seen s
        JOIN ins AS last_event ON last_event.seq = s.last_seq
        LEFT JOIN activations a ON a.integration_id = s.integration_id
        LEFT JOIN last_runs l ON l.integration_id = s.integration_id
        ORDER BY s.integration_id  -- one lock order for every writer, after sync_runs
        ON CONFLICT (integration_id) DO UPDATE SET
            first_seen_at       = least(i.first_seen_at, excluded.first_seen_at),
            last_event_type     = CASE WHEN excluded.last_event_at >= i.last_event_at
                                       THEN excluded.last_event_type ELSE i.last_event_type END,
            last_event_at       = greatest(i.last_event_at, excluded.last_event_at),
            -- An activation replaces the stored one only if it is newer: an old one landing late changes nothing.
            activated_at        = CASE WHEN {landing}.activation_is_newer(excluded.activated_at,
                                                excluded.activation_event_id, i.activated_at, i.activation_event_id)
                                       THEN excluded.activated_at ELSE i.activated_at END,
            validation_errors   = CASE WHEN {landing}.activation_is_newer(excluded.activated_at,
                                                excluded.activation_event_id, i.activated_at, i.activation_event_id)
                                       THEN excluded.validation_errors ELSE i.validation_errors END,
            activation_seq      = CASE WHEN {landing}.activation_is_newer(excluded.activated_at,
                                                excluded.activation_event_id, i.activated_at, i.activation_event_id)
                                       THEN excluded.activation_seq ELSE i.activation_seq END,
            activation_event_id = CASE WHEN {landing}.activation_is_newer(excluded.activated_at,
                                                excluded.activation_event_id, i.activated_at, i.activation_event_id)
                                       THEN excluded.activation_event_id ELSE i.activation_event_id END,
            last_sync_run_id    = CASE WHEN excluded.last_sync_run_seq > coalesce(i.last_sync_run_seq, -1)
                                       THEN excluded.last_sync_run_id ELSE i.last_sync_run_id END,
            last_sync_run_at    = CASE WHEN excluded.last_sync_run_seq > coalesce(i.last_sync_run_seq, -1)
                                       THEN excluded.last_sync_run_at ELSE i.last_sync_run_at END,
            last_sync_run_seq   = greatest(i.last_sync_run_seq, excluded.last_sync_run_seq)
        RETURNING 1
    ), notified AS (
        SELECT pg_notify('{notify_channel}', json_build_object(
                   'sync_job_id', sync_job_id, 'sync_run_id', sync_run_id,
                   'event_type', event_type, 'seq', seq)::text)
        FROM ins WHERE event_type LIKE 'sync.events.%' OR event_type = 'app.integration.activate'
    )
    SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM runs) + 0 * (SELECT count(*) FROM registry)
           + 0 * (SELECT count(*) FROM notified)
    INTO landed;
    RETURN landed;
END
$fn$;
