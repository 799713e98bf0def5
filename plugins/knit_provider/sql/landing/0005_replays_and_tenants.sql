-- What a replayed or re-addressed delivery may change (issue 21). Knit sends no nonce, and the integration
-- header (X-Knit-Integration-Id) is not covered by the signature, so:
--   * a run that is complete and whose first event landed before the dedup window takes no event whose id
--     is not remembered (see `closed` in functions/land_events.sql): a replay after the window is acknowledged, not stored, not
--     counted;
--   * a run's integration is fixed by its first landed events: a later event of the run whose header names
--     another integration is stored under the run's integration, never moved to the other tenant;
--   * the registry takes an activation's integration from eventData.integrationId (signed) only: a header
--     never creates, activates or reactivates an integration;
--   * event_ids keeps a digest of the body landed under each id: a different body under a known id is
--     reported to the caller (the receiver keeps it as a dead letter) instead of being dropped silently;
--   * ensure_event_partitions never waits for the partitions lock: a receiver starts while prune runs.
-- These rules live in functions/land_events.sql and functions/partitions.sql; this migration holds the column.
-- Runs on a populated store: ids remembered before it have no digest and count as the same body.

ALTER TABLE {landing}.event_ids ADD COLUMN IF NOT EXISTS body_digest bytea;
