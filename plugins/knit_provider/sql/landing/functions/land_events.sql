-- Land a batch of parsed events in one statement: the events (an id remembered in event_ids is not landed
-- again), their runs' rows in sync_runs, the integration registry, and a NOTIFY per landed run event and
-- activation, all in the caller's transaction. Arrays are parallel, one element per event, in arrival order.

-- The first release's nine-array form: retired (a call with nine arrays reaches the ten-array form below,
-- whose last array defaults to NULL; both at once would make such a call ambiguous).
DROP FUNCTION IF EXISTS {landing}.land_events(text[], text[], text[], text[], text[], text[], text[], text[], jsonb[]);

-- The receiver's form: the ten arrays of 0002-0004 and the body digests (blake2b-128 of the body as landed,
-- computed by the receiver; NULL elements, or a NULL array, mean unknown and never conflict). Returns how many
-- events landed, how many were dropped as replays of closed runs, how many named by their header an integration
-- other than their run's (stored under the run's), and the positions (1-based) of the events whose id had
-- landed with another body (not stored: the caller keeps them as dead letters).
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
    p_execution_ids   text[],
    p_body_digests    bytea[],
    OUT landed        bigint,
    OUT replayed      bigint,
    OUT rehomed       bigint,
    OUT conflicts     bigint[]
)
LANGUAGE plpgsql AS $fn$
BEGIN
    WITH input AS (
        SELECT event_id, event_type, nullif(sync_type, '') AS sync_type,
               nullif(sync_data_type, '') AS sync_data_type, nullif(sync_job_id, '') AS sync_job_id,
               nullif(sync_run_id, '') AS sync_run_id, nullif(record_id, '') AS record_id,
               nullif(integration_id, '') AS header_id, payload, nullif(execution_id, '') AS execution_id,
               body_digest, ord
        FROM unnest(p_event_ids, p_event_types, p_sync_types, p_sync_data_types, p_sync_job_ids,
                    p_sync_run_ids, p_record_ids, p_integration_ids, p_payloads, p_execution_ids, p_body_digests)
            WITH ORDINALITY AS t(event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id,
                                 record_id, integration_id, payload, execution_id, body_digest, ord)
    ), known_runs AS (
        -- The batch's runs as stored: one primary-key probe per run of the batch, not per event.
        -- `closed`: complete, and its first event landed before the dedup window. Knit sends allConsumed only
        -- after every event of the run was answered 200, and a 200 follows the commit; a final processed report
        -- completes a run only when it emitted nothing. So a complete run has no genuine event left to land:
        -- a delivery with an id we do not remember is either a redelivery whose id was forgotten (the window
        -- passed since it landed) or a replay. Only a run that began before the window can have forgotten ids,
        -- and only its events are refused; a complete run younger than that still remembers every id it
        -- landed, so an unknown id there is not a replay (a dead letter replayed by hand lands). "Complete for
        -- longer than the window" would not do: a run that took longer than the window forgets its early ids
        -- before it completes, and their replays would land in the window after completion. A pruned run is
        -- complete and began before the retention (at least the window): closed too. A run never seen, or not
        -- complete, lands as before (the README says so).
        SELECT r.sync_run_id, r.integration_id AS owner,
               r.complete_at IS NOT NULL AND r.first_received_at < now() - {landing}.dedup_window() AS closed
        FROM {landing}.sync_runs r
        WHERE r.sync_run_id IN (SELECT sync_run_id FROM input)
    ), batch_owners AS (
        -- A run new to the store belongs to the integration its first event of the batch names.
        SELECT DISTINCT ON (sync_run_id) sync_run_id, header_id AS owner
        FROM input WHERE sync_run_id IS NOT NULL AND header_id IS NOT NULL
        ORDER BY sync_run_id, ord
    ), placed AS (
        -- The header is not signed: an event of a run that already belongs to an integration stays with it.
        -- (Two concurrent batches creating one run under two headers keep the first committed owner in sync_runs;
        -- that needs a never-landed signed body of a run being delivered at that moment, and stores nothing twice.)
        -- Without the payloads: this is read three times, and copying them costs more than joining back by ord.
        SELECT i.ord, i.event_id, i.header_id, i.body_digest,
               CASE WHEN i.header_id IS NULL THEN NULL ELSE coalesce(k.owner, b.owner, i.header_id) END
                   AS integration_id,
               coalesce(k.closed, false) AS closed
        FROM input i
        LEFT JOIN known_runs k USING (sync_run_id)
        LEFT JOIN batch_owners b USING (sync_run_id)
    ), fresh AS (
        -- Sorted by id: one lock order for every writer, so two batches sharing ids cannot deadlock.
        -- A closed run's events do not even take an id: they change nothing.
        INSERT INTO {landing}.event_ids AS k (event_id, body_digest)
        SELECT DISTINCT ON (event_id) event_id, body_digest FROM placed WHERE NOT closed
        ORDER BY event_id, ord
        ON CONFLICT (event_id) DO NOTHING
        RETURNING k.event_id
    ), first_seen AS (
        SELECT DISTINCT ON (p.event_id) p.ord, p.header_id, p.integration_id
        FROM placed p JOIN fresh f USING (event_id)
        WHERE NOT p.closed
        ORDER BY p.event_id, p.ord
    ), ins AS (
        INSERT INTO {landing}.events AS e
            (event_id, event_type, sync_type, sync_data_type, sync_job_id, sync_run_id, record_id,
             integration_id, payload, execution_id)
        SELECT i.event_id, i.event_type, i.sync_type, i.sync_data_type, i.sync_job_id, i.sync_run_id, i.record_id,
               s.integration_id, i.payload, i.execution_id
        FROM first_seen s JOIN input i USING (ord)
        ORDER BY ord
        RETURNING e.seq, e.event_id, e.event_type, e.sync_type, e.sync_data_type, e.sync_job_id, e.sync_run_id,
                  e.integration_id, e.received_at,
                  CASE WHEN e.event_type IN ('sync.events.processed', 'sync.events.allConsumed',
                                             'app.integration.activate')
                       THEN e.payload -> 'eventData' END AS data,
                  -- The registry's key. An activation's is eventData.integrationId, which the signature covers;
                  -- an activation without it is stored but touches no integration. Other events carry their
                  -- integration only in the header (run events: their run's, see `placed`); they record that it
                  -- was seen and synced, which never makes it active.
                  CASE WHEN e.event_type = 'app.integration.activate'
                       THEN {landing}.envelope_id(e.payload -> 'eventData', 'integrationId')
                       ELSE e.integration_id END AS registry_id
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
            complete_at       = coalesce(r.complete_at, excluded.complete_at),
            complete_seq      = coalesce(r.complete_seq, excluded.complete_seq),
            completed_by      = coalesce(r.completed_by, excluded.completed_by)
        RETURNING r.sync_run_id, r.integration_id, r.first_seq, r.first_received_at
    ), seen AS (
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
    SELECT (SELECT count(*) FROM ins),
           -- Ids of closed runs that event_ids does not hold: the replays refused (a remembered one is a
           -- redelivery inside the window, silent as always).
           (SELECT count(DISTINCT p.event_id) FROM placed p
            WHERE p.closed AND NOT EXISTS (SELECT 1 FROM {landing}.event_ids k WHERE k.event_id = p.event_id)),
           (SELECT count(*) FROM first_seen WHERE header_id IS DISTINCT FROM integration_id)
           + 0 * (SELECT count(*) FROM runs) + 0 * (SELECT count(*) FROM registry)
           + 0 * (SELECT count(*) FROM notified)
    INTO landed, replayed, rehomed;
    -- A different body under an id already landed (before, or earlier in this batch). Only when something was
    -- not landed, so a batch of new ids pays nothing; a statement of its own, so it sees a body committed by a
    -- concurrent batch that the one above waited for. An id remembered without a digest (landed before this
    -- migration, or by a caller that passes none) counts as the same body.
    conflicts := '{}';
    IF landed < cardinality(p_event_ids) AND p_body_digests IS NOT NULL THEN
        SELECT coalesce(array_agg(t.ord ORDER BY t.ord), '{}') INTO conflicts
        FROM unnest(p_event_ids, p_body_digests) WITH ORDINALITY AS t(event_id, body_digest, ord)
        JOIN {landing}.event_ids k USING (event_id)
        WHERE k.body_digest <> t.body_digest;
    END IF;
END
$fn$;

-- The ten-array form of 0002-0004 (tests, benchmarks, tools), unchanged for its callers: no digests, so no
-- conflicts; replays and re-addressed events are handled as above.
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
LANGUAGE sql AS $fn$
    SELECT landed FROM {landing}.land_events(p_event_ids, p_event_types, p_sync_types, p_sync_data_types,
                                             p_sync_job_ids, p_sync_run_ids, p_record_ids, p_integration_ids,
                                             p_payloads, p_execution_ids, NULL::bytea[])
$fn$;
