-- Query (not a migration): claim activations not announced yet for the onboarding watcher, oldest first.
-- announced_seq is set in the same statement that picks the rows, and the outer WHERE repeats the
-- conditions, so under concurrent triggerers an activation is claimed once. A newer activation of the
-- same integration (a larger activation_seq, whenever it lands) is announced again; an older one landing
-- late does not replace the stored one (land_events), so it is never announced. Disabled integrations are
-- left until enabled.
UPDATE {landing}.integrations AS i
SET announced_seq = i.activation_seq, announced_at = now()
WHERE i.integration_id IN (
        SELECT p.integration_id
        FROM {landing}.integrations AS p
        WHERE p.activation_seq IS NOT NULL
          AND p.announced_seq IS DISTINCT FROM p.activation_seq
          AND p.disabled_at IS NULL
        ORDER BY p.activated_at, p.integration_id
        LIMIT %(batch_size)s::int)
  AND i.activation_seq IS NOT NULL
  AND i.announced_seq IS DISTINCT FROM i.activation_seq
  AND i.disabled_at IS NULL
RETURNING i.integration_id, i.state, i.activation_event_id, i.activated_at, i.validation_errors, i.announced_at
