-- Query (not a migration): the onboarding DAG claims the integrations whose initial sync it follows (adopting
-- the one Knit starts by itself on connection, or starting one). Only an active integration that was never
-- onboarded, never synced to completion before its activation (the main DAG may have got there first: it then
-- keeps it in sync; a run that began landing up to adopt_margin seconds before the activation counts as Knit's
-- own initial sync, as Knit's clock and ours differ and its events may overtake the activation), and that no
-- other DAG run is onboarding (a claim older than stale_after seconds counts as abandoned) is claimed; the row lock and the re-checked WHERE
-- make two DAG runs that claim at once get disjoint sets. Returns the integrations claimed.
UPDATE {landing}.integrations AS i
SET onboarding_claimed_at = now(), onboarding_dag_run_id = %(dag_run_id)s
WHERE i.integration_id = ANY(%(ids)s::text[])
  AND i.state = 'active'
  AND i.onboarded_at IS NULL
  AND (i.onboarding_claimed_at IS NULL
       OR i.onboarding_claimed_at <= now() - make_interval(secs => %(stale_after)s::float8))
  AND NOT EXISTS (SELECT 1 FROM {landing}.sync_runs AS r
                  WHERE r.integration_id = i.integration_id AND r.sync_data_type = %(data_type)s
                    AND r.complete_at IS NOT NULL
                    AND r.first_received_at < coalesce(i.activated_at, 'infinity'::timestamptz)
                                              - make_interval(secs => %(adopt_margin)s::float8))
RETURNING i.integration_id
