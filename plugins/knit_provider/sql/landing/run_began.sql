-- Query (not a migration): the first run of an integration and data type (and sync type, when given) whose
-- first event landed at or after %(since)s, on this database's clock; none when no such run has landed yet.
-- Asked by a retried sync.start (did the lost attempt start a run?) and by the wait for Knit's own run.
SELECT s.sync_run_id, s.sync_job_id, s.sync_type, s.first_received_at
FROM {landing}.sync_runs AS s
WHERE s.integration_id = %(integration_id)s
  AND s.sync_data_type = %(data_type)s
  AND s.sync_job_id IS NOT NULL
  AND s.first_received_at >= %(since)s
  AND (%(sync_type)s::text IS NULL OR s.sync_type = %(sync_type)s::text)
ORDER BY s.first_received_at, s.first_seq
LIMIT 1
