-- Query (not a migration): what an earlier try of this task instance did (landing/0006_sync_starts.sql).
SELECT first_requested_at, answered, sync_job_id, sync_run_id, started_by, waited_seconds
FROM {landing}.sync_starts
WHERE dag_id = %(dag_id)s AND dag_run_id = %(dag_run_id)s AND task_id = %(task_id)s AND map_index = %(map_index)s
