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

-- dedup_window(), event_week() and ensure_event_partitions(), used below, live in functions/event_ids.sql and
-- functions/partitions.sql, applied before this migration (see landing/migrate.py).

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

SELECT {landing}.ensure_event_partitions();
