-- Query (not a migration): claim complete (complete_at: see 0002), not yet normalized runs of one data type for the
-- asset watcher. announced_at is set in the same statement that picks the runs, and the outer
-- WHERE repeats the conditions, so under concurrent triggerers Postgres re-checks a row that
-- another one just claimed and skips it: a run is claimed once. A run announced longer than
-- reannounce_after seconds ago and still not normalized (its DAG run failed or was lost)
-- is claimed again; NULL turns that off.
UPDATE {landing}.sync_runs AS r
SET announced_at = now()
WHERE r.sync_run_id IN (
        SELECT p.sync_run_id
        FROM {landing}.sync_runs AS p
        WHERE p.sync_data_type = %(data_type)s
          AND p.complete_at IS NOT NULL
          AND p.normalized_at IS NULL
          AND (p.announced_at IS NULL
               OR p.announced_at <= now() - make_interval(secs => %(reannounce_after)s::float8))
        ORDER BY p.complete_at, p.sync_run_id
        LIMIT %(batch_size)s::int)
  AND r.sync_data_type = %(data_type)s
  AND r.complete_at IS NOT NULL
  AND r.normalized_at IS NULL
  AND (r.announced_at IS NULL
       OR r.announced_at <= now() - make_interval(secs => %(reannounce_after)s::float8))
RETURNING r.sync_run_id, r.sync_job_id, r.integration_id, r.sync_data_type, r.sync_type,
          r.record_events, r.processed_count, r.emitted_count, r.consumed_count,
          r.first_seq, r.all_consumed_at, r.complete_at, r.completed_by, r.announced_at
