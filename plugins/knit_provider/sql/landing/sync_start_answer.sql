-- Query (not a migration): record the run this task instance ended up with (Knit's answer, the run a
-- recovery found, or Knit's own run it adopted). Inserts the row when nothing was sent (an adopted run): its
-- first_requested_at is then the time given (the adopted run's first event), so a retry hands on the same start.
INSERT INTO {landing}.sync_starts AS s
    (dag_id, dag_run_id, task_id, map_index, integration_id, data_type, first_requested_at, answered,
     sync_job_id, sync_run_id, started_by, waited_seconds)
VALUES (%(dag_id)s, %(dag_run_id)s, %(task_id)s, %(map_index)s, %(integration_id)s, %(data_type)s,
        coalesce(%(requested_at)s::timestamptz, now()), true, %(sync_job_id)s, %(sync_run_id)s, %(started_by)s,
        %(waited_seconds)s)
ON CONFLICT (dag_id, dag_run_id, task_id, map_index) DO UPDATE
SET answered = true, sync_job_id = excluded.sync_job_id, sync_run_id = excluded.sync_run_id,
    started_by = excluded.started_by, waited_seconds = excluded.waited_seconds, updated_at = now()
