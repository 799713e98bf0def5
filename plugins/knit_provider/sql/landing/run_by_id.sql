-- Query (not a migration): the run a sensor waits for, when its sync_run_id is known.
SELECT sync_run_id, sync_job_id, integration_id, sync_data_type, record_events,
       processed_count, emitted_count, consumed_count, processed_complete,
       first_received_at, last_received_at, all_consumed_at, complete_at, completed_by
FROM {landing}.sync_runs
WHERE sync_run_id = %(sync_run_id)s
