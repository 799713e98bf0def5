-- Migration 0006: what each StartSyncOperator try did, so that a retried task never starts a second run.
--
-- sync.start is not idempotent, and an attempt whose answer is lost (a read timeout, a connection cut after
-- the request went out) may have started a run. One row per task instance (map index included), written
-- BEFORE sync.start is sent and completed once the answer (or the run that was found instead) is known:
-- a later try of the same task reuses an answered row's ids without calling Knit, and with an unanswered
-- row first looks for a run that began after first_requested_at. started_by says whether the run was
-- Knit's own (adopted: onboarding waited for Knit's automatic initial sync) or started by Airflow, and
-- waited_seconds how long the task waited for Knit's run before deciding; the syncs page shows both.
CREATE TABLE IF NOT EXISTS {landing}.sync_starts (
    dag_id             text        NOT NULL,
    dag_run_id         text        NOT NULL,
    task_id            text        NOT NULL,
    map_index          integer     NOT NULL,
    integration_id     text        NOT NULL,
    data_type          text        NOT NULL,
    -- The database clock when the first try wrote the row, just before its first sync.start: a run whose
    -- first event landed at or after it may be the one that call started.
    first_requested_at timestamptz NOT NULL DEFAULT now(),
    answered           boolean     NOT NULL DEFAULT false,
    sync_job_id        text,
    sync_run_id        text,
    started_by         text,
    waited_seconds     double precision,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, dag_run_id, task_id, map_index),
    CONSTRAINT sync_starts_started_by CHECK (started_by IN ('airflow', 'knit')),
    CONSTRAINT sync_starts_answer_complete CHECK (NOT answered OR (sync_job_id IS NOT NULL AND started_by IS NOT NULL))
);

-- "Did a run of this integration and data type begin since T?" (landing/run_began.sql): asked by a retried
-- start and by onboarding's wait for Knit's own initial sync.
CREATE INDEX IF NOT EXISTS sync_runs_began_idx ON {landing}.sync_runs (integration_id, sync_data_type, first_received_at);
