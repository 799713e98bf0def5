-- Query (not a migration): the registry, one row per integration, optionally only some states or ids.
SELECT integration_id, state, first_seen_at, last_event_at, last_event_type, activated_at, activation_event_id,
       validation_errors, last_sync_run_id, last_sync_run_at, disabled_at, announced_at, onboarding_claimed_at,
       onboarding_dag_run_id, onboarded_at, onboarding_sync_run_id
FROM {landing}.integrations
WHERE (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
  AND (%(ids)s::text[] IS NULL OR integration_id = ANY(%(ids)s::text[]))
ORDER BY integration_id
