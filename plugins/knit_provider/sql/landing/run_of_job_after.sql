-- Query (not a migration): the first run of a job whose first event landed at or after the time
-- the operator read from this database's clock. An older run never qualifies, whatever lands late.
SELECT sync_run_id, sync_job_id, integration_id, sync_data_type, record_events,
       processed_count, emitted_count, consumed_count, processed_complete,
       first_received_at, last_received_at, all_consumed_at, complete_at, completed_by
FROM {landing}.sync_runs
WHERE sync_job_id = %(sync_job_id)s
  AND first_received_at >= %(started_after)s
ORDER BY first_received_at, first_seq
LIMIT 1
