-- Query (not a migration): record that this task instance is about to send sync.start, before it is sent.
-- A retry keeps the first try's first_requested_at: a run that began after it may be the first call's.
INSERT INTO {landing}.sync_starts AS s (dag_id, dag_run_id, task_id, map_index, integration_id, data_type)
VALUES (%(dag_id)s, %(dag_run_id)s, %(task_id)s, %(map_index)s, %(integration_id)s, %(data_type)s)
ON CONFLICT (dag_id, dag_run_id, task_id, map_index) DO UPDATE SET updated_at = now()
RETURNING s.first_requested_at
