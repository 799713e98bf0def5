-- Query (not a migration): the onboarding DAG claims the integrations it will start an initial sync for.
-- Only an active integration that was never onboarded and that no other DAG run is onboarding (a claim
-- older than stale_after seconds counts as abandoned) is claimed; the row lock and the re-checked WHERE
-- make two DAG runs that claim at once get disjoint sets. Returns the integrations claimed.
UPDATE {landing}.integrations
SET onboarding_claimed_at = now(), onboarding_dag_run_id = %(dag_run_id)s
WHERE integration_id = ANY(%(ids)s::text[])
  AND state = 'active'
  AND onboarded_at IS NULL
  AND (onboarding_claimed_at IS NULL
       OR onboarding_claimed_at <= now() - make_interval(secs => %(stale_after)s::float8))
RETURNING integration_id
