-- A landing store whose per-event cost does not grow with its history (issue 14):
--   * events is partitioned by time of arrival (received_at), one partition per week (Monday 00:00 UTC),
--     created ahead by ensure_event_partitions() (receiver start-up, `migrate`, the maintenance DAG), with
--     a DEFAULT partition so that an insert never fails when the clock passes the last one created;
--   * exactly-once rests on event_ids, which keeps an id for the dedup window only (Knit retries for four
--     days; seven are kept), instead of a unique index over every event ever landed;
--   * the table as it was becomes the first partition, in place: nothing is copied.
-- Runs on a populated store. The one step that reads the whole old table is the validation of its CHECK
-- constraint (a sequential read, no writes), which lets ATTACH skip its own scan.

CREATE TABLE IF NOT EXISTS {landing}.event_ids (
    event_id    text        PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- How long an event id is remembered. A redelivery after it lands again (see README, "Retention").
CREATE OR REPLACE FUNCTION {landing}.dedup_window() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '7 days' $$;

-- Forget the ids older than the dedup window (start-up, the receiver hourly, maintenance, prune); return how
-- many. A role that may not delete them (a receiver without that grant) leaves them to the owner's next pass.
CREATE OR REPLACE FUNCTION {landing}.forget_event_ids(p_at timestamptz DEFAULT now()) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    forgotten bigint;
BEGIN
    IF NOT has_table_privilege('{landing}.event_ids', 'DELETE') THEN
        RAISE WARNING 'role % may not delete from %.event_ids: ids past the dedup window are kept until its '
                      'owner runs `python -m knit_provider migrate` or the knit_landing_maintenance DAG',
                      current_user, '{landing}';
        RETURN 0;
    END IF;
    DELETE FROM {landing}.event_ids WHERE received_at < p_at - {landing}.dedup_window();
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    RETURN forgotten;
END
$fn$;

-- The partition of the week that contains a time: weeks start on Monday 00:00 UTC.
CREATE OR REPLACE FUNCTION {landing}.event_week(at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT date_trunc('week', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;

ALTER TABLE {landing}.sync_runs
    -- Set by prune when the run's landed events were removed (retention); normalization then skips the run.
    ADD COLUMN IF NOT EXISTS events_pruned_at timestamptz;

DO $migrate$
DECLARE
    boundary  timestamptz := {landing}.event_week(now()) + interval '1 week';
    old_seq   text := pg_get_serial_sequence('{landing}.events', 'seq');
    next_seq  bigint;
    window_start bigint;
BEGIN
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = '{landing}.events'::regclass) = 'p' THEN
        RETURN;
    END IF;
    LOCK TABLE {landing}.events IN ACCESS EXCLUSIVE MODE;

    -- Remember the ids still inside the dedup window. Rows are in seq order and seq follows arrival (both
    -- are taken when the row is inserted), so walking the primary key back from the newest row to the first
    -- one older than the window (with an hour of slack) reads the window only, not the history.
    SELECT coalesce(max(e.seq), 0) INTO window_start
    FROM (SELECT seq FROM {landing}.events
          WHERE received_at < now() - {landing}.dedup_window() - interval '1 hour'
          ORDER BY seq DESC LIMIT 1) AS e;
    INSERT INTO {landing}.event_ids (event_id, received_at)
    SELECT event_id, received_at FROM {landing}.events
    WHERE seq > window_start AND received_at >= now() - {landing}.dedup_window()
    ON CONFLICT (event_id) DO NOTHING;

    -- seq becomes a plain column fed by a sequence that continues where the identity stopped (a
    -- partitioned table cannot have an identity column before Postgres 17).
    SELECT greatest(coalesce(pg_sequence_last_value(old_seq::regclass), 0), coalesce(max(seq), 0)) + 1
    INTO next_seq FROM {landing}.events;
    ALTER TABLE {landing}.events ALTER COLUMN seq DROP IDENTITY;
    EXECUTE format('CREATE SEQUENCE {landing}.events_seq AS bigint START WITH %s', next_seq);

    -- Uniqueness of event_id moves to event_ids: a redelivery after the window must land, not fail the batch.
    ALTER TABLE {landing}.events DROP CONSTRAINT events_event_id_key;
    ALTER TABLE {landing}.events RENAME TO events_legacy;
    ALTER TABLE {landing}.events_legacy RENAME CONSTRAINT events_pkey TO events_legacy_pkey;
    ALTER INDEX {landing}.events_run_seq_idx RENAME TO events_legacy_run_seq_idx;
    ALTER INDEX {landing}.events_job_run_events_idx RENAME TO events_legacy_job_run_events_idx;
    EXECUTE format('ALTER TABLE {landing}.events_legacy ADD CONSTRAINT events_legacy_received_at_check '
                   'CHECK (received_at < %L)', boundary);

    CREATE TABLE {landing}.events (
        seq             bigint      NOT NULL DEFAULT nextval('{landing}.events_seq'),
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
        execution_id    text
    ) PARTITION BY RANGE (received_at);
    ALTER SEQUENCE {landing}.events_seq OWNED BY {landing}.events.seq;

    -- The same two indexes as before, found in the old table and attached rather than built again.
    -- No index on seq alone or on event_id: readers look events up by (sync_run_id, seq), and the ids
    -- are deduplicated by event_ids. Fewer indexes are fewer random pages to write per event.
    CREATE INDEX events_run_seq_idx ON {landing}.events (sync_run_id, seq);
    CREATE INDEX events_job_run_events_idx ON {landing}.events (sync_job_id, seq)
        WHERE event_type LIKE 'sync.events.%';

    EXECUTE format('ALTER TABLE {landing}.events ATTACH PARTITION {landing}.events_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', boundary);
    CREATE TABLE {landing}.events_default PARTITION OF {landing}.events DEFAULT;
    ALTER TABLE {landing}.events_default SET (toast_tuple_target = 8160);
END
$migrate$;

-- Create the weekly partitions from the week of p_at to p_weeks_ahead weeks after it; return how many
-- were created. Rows that landed in the DEFAULT partition meanwhile (nothing created the partition in
-- time) are moved into the new one. Each partition is built as a table and ATTACHed, which takes a
-- lighter lock on events than CREATE ... PARTITION OF: the receiver keeps writing meanwhile.
-- Weeks already covered (the old table's, or created by another caller) are left as they are.
CREATE OR REPLACE FUNCTION {landing}.ensure_event_partitions(
    p_at           timestamptz DEFAULT now(),
    p_weeks_ahead  integer DEFAULT 4,
    p_lock_timeout text DEFAULT '5s'
) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    created integer := 0;
    week_start timestamptz;
    week_end timestamptz;
    part text;
    caller_lock_timeout text := current_setting('lock_timeout');
BEGIN
    -- Only the owner of events may attach partitions. A receiver running as another role (README: inside
    -- Airflow's API server) must still start: its rows land in events_default until the owner's next pass.
    IF NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = '{landing}.events'::regclass), 'MEMBER') THEN
        RAISE WARNING 'role % does not own %.events: no partitions created ahead; run `python -m knit_provider '
                      'migrate` or the knit_landing_maintenance DAG as its owner', current_user, '{landing}';
        RETURN 0;
    END IF;
    -- One caller at a time per schema (a receiver starting while the maintenance DAG runs).
    PERFORM pg_advisory_xact_lock(hashtext('knit_provider.partitions:' || '{landing}'));
    -- ATTACH locks events_default exclusively: behind a long reader of it, wait a little, not for the
    -- reader's whole transaction (a receiver's start-up calls this), and leave the week to the next pass.
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    FOR i IN 0 .. greatest(p_weeks_ahead, 0) LOOP
        week_start := {landing}.event_week(p_at) + i * interval '1 week';
        week_end := week_start + interval '1 week';
        part := 'events_' || to_char(week_start AT TIME ZONE 'UTC', 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('{landing}.%I', part)) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE {landing}.%I (LIKE {landing}.events INCLUDING DEFAULTS) '
                           'WITH (toast_tuple_target = 8160)', part);
            EXECUTE format('ALTER TABLE {landing}.%I ADD CONSTRAINT %I CHECK (received_at >= %L AND received_at < %L)',
                           part, part || '_range', week_start, week_end);
            EXECUTE format('WITH moved AS (DELETE FROM {landing}.events_default WHERE received_at >= %L '
                           'AND received_at < %L RETURNING *) INSERT INTO {landing}.%I SELECT * FROM moved',
                           week_start, week_end, part);
            EXECUTE format('ALTER TABLE {landing}.events ATTACH PARTITION {landing}.%I FOR VALUES FROM (%L) TO (%L)',
                           part, week_start, week_end);
            -- The CHECK only spared ATTACH a scan; the partition bound says the same from now on.
            EXECUTE format('ALTER TABLE {landing}.%I DROP CONSTRAINT %I', part, part || '_range');
            created := created + 1;
        EXCEPTION
            WHEN invalid_object_definition THEN
                -- "would overlap partition": the old table (or another range) already covers this week.
                NULL;
            WHEN lock_not_available THEN
                RAISE WARNING 'partition % not created: %.events_default is in use; the next pass creates it',
                              part, '{landing}';
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', caller_lock_timeout, true);
    RETURN created;
END
$fn$;

SELECT {landing}.ensure_event_partitions();

-- land_events keeps its ten arrays and what it returns; only the deduplication moves to event_ids. An id
-- seen twice in one batch lands once (its first occurrence), as ON CONFLICT on events did.
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
