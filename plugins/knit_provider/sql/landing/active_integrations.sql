-- Query (not a migration): the integrations the main DAG syncs in "all active" mode: active, and not
-- being onboarded right now (the onboarding DAG's claim, younger than stale_after seconds, means an
-- initial sync of it is running: a second one must not start).
SELECT integration_id
FROM {landing}.integrations
WHERE state = 'active'
  AND (onboarding_claimed_at IS NULL OR onboarded_at IS NOT NULL
       OR onboarding_claimed_at <= now() - make_interval(secs => %(stale_after)s::float8))
ORDER BY integration_id
