-- Query (not a migration): the integrations the main DAG syncs in "all active" mode: those Knit activated
-- without validation errors, and those known only from their syncs (synced before the registry existed, or
-- before Knit's activation reached it: leaving them out would silently stop syncing a working customer);
-- never a disabled one or one whose last activation failed validation. Not those being onboarded right now
-- (the onboarding DAG's claim, younger than stale_after seconds, means an initial sync of it is running: a
-- second one must not start).
SELECT integration_id
FROM {landing}.integrations
WHERE state IN ('active', 'seen_only_through_syncs')
  AND (onboarding_claimed_at IS NULL OR onboarded_at IS NOT NULL
       OR onboarding_claimed_at <= now() - make_interval(secs => %(stale_after)s::float8))
ORDER BY integration_id
