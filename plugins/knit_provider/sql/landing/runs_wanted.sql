-- Query (not a migration): the sync_runs rows a batch of waiters wait for, one row per waiter whose run has
-- landed, tagged with the waiter's position (1-based) in the arrays. A waiter gives either a
-- sync_run_id (that run), or a sync_job_id and started_after: the first run of the job whose first
-- event landed at or after the time the operator read from this database's clock (an older run
-- never qualifies, whatever lands late), and which Knit did not report as started before that time:
-- Knit runs deltas of the same job on its own schedule, and a run it began just before our sync.start
-- can land its first event after the clock was read. Knit's startedAt arrives with sync.events.processed,
-- so such a run is passed over before it can complete; one second absorbs a Knit clock slightly behind
-- the database's. One statement for the sensor's single check and for the
-- triggerer's backup poll over every waiting run; each branch is an index lookup per waiter.
SELECT w.waiter, r.*
FROM unnest(%(sync_run_ids)s::text[], %(sync_job_ids)s::text[], %(started_afters)s::timestamptz[])
         WITH ORDINALITY AS w(sync_run_id, sync_job_id, started_after, waiter)
CROSS JOIN LATERAL (
    (SELECT s.sync_run_id, s.sync_job_id, s.integration_id, s.sync_data_type, s.record_events,
            s.processed_count, s.emitted_count, s.consumed_count, s.processed_complete,
            s.first_received_at, s.last_received_at, s.all_consumed_at, s.complete_at, s.completed_by
     FROM {landing}.sync_runs AS s
     WHERE s.sync_run_id = w.sync_run_id)
    UNION ALL
    (SELECT s.sync_run_id, s.sync_job_id, s.integration_id, s.sync_data_type, s.record_events,
            s.processed_count, s.emitted_count, s.consumed_count, s.processed_complete,
            s.first_received_at, s.last_received_at, s.all_consumed_at, s.complete_at, s.completed_by
     FROM {landing}.sync_runs AS s
     WHERE w.sync_run_id IS NULL
       AND s.sync_job_id = w.sync_job_id
       AND s.first_received_at >= w.started_after
       AND (s.started_at IS NULL OR s.started_at >= w.started_after - interval '1 second')
     ORDER BY s.first_received_at, s.first_seq
     LIMIT 1)
) AS r
