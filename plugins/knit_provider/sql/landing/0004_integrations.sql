-- The integration registry (issue 16): one row per integration the landing store has heard of, so that
-- nobody types integration ids. Knit's users' customers connect their ATS at any time; Knit then sends
-- app.integration.activate ("fired after an integration validation is complete; payload may contain
-- validation errors; if it doesn't, use this event as a trigger for starting data syncs").
--   * land_events (functions/land_events.sql) keeps the registry in the same statement that lands a batch: one upsert per
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

-- activation_errors(), envelope_id() and try_epoch_ms(), used by the back-fill, live in functions/activations.sql
-- and functions/values.sql, applied before this migration (see landing/migrate.py).

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
