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
