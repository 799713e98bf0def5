-- Query (not a migration): who started each of these runs, as StartSyncOperator recorded it (the syncs page).
-- A run recorded by several task instances (an adopted run, then a retry) shows the latest record.
SELECT DISTINCT ON (s.sync_run_id) s.sync_run_id, s.started_by, s.waited_seconds, s.dag_id, s.dag_run_id
FROM {landing}.sync_starts AS s
WHERE s.answered AND s.sync_run_id = ANY(%(sync_run_ids)s::text[])
ORDER BY s.sync_run_id, s.updated_at DESC
