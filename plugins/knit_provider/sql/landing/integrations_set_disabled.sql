-- Query (not a migration): disable or enable integrations by hand. Disabling keeps the first time it was
-- disabled; no event changes disabled_at, so a disabled integration stays disabled until enabled.
UPDATE {landing}.integrations
SET disabled_at = CASE WHEN %(disabled)s THEN coalesce(disabled_at, now()) END
WHERE integration_id = ANY(%(ids)s::text[])
RETURNING integration_id
