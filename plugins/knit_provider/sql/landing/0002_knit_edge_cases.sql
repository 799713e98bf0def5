-- What real Knit sends beyond our first guesses (issue 17):
--   * a run is complete when allConsumed lands OR when its final processed report (complete: true)
--     says emitted: 0 (Knit always sends processed; it does not promise allConsumed when there was
--     nothing to emit). complete_at/complete_seq are that one definition; every reader uses them;
--   * '' in an envelope id means absent (Knit's record.deleted sample carries empty ids);
--   * X-Knit-Execution-Id is kept with each event (Knit's support asks for it);
--   * dead letters are deduplicated by body (Knit retries a non-200 for days; an authentic body that
--     cannot be used is now answered 200 once stored, but older receivers stored one row per attempt),
--     and carry the ids that could be read, so reconciliation can name a run's dead letters.
-- Runs on a populated store: every step keeps what is there. land_events and land_dead_letters, which
-- applied these rules from then on, live in functions/.

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

-- The ids of dead letters stored before this migration, where the body is readable JSON (try_jsonb and
-- envelope_id live in functions/values.sql, applied before this migration: see landing/migrate.py).
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
