-- Before a data type's steps: per integration, the earliest snapshot of this data type applied after the
-- run being normalized (usually none: runs come in order). A record whose latest event is this run's,
-- alive, is deleted as of that snapshot: the snapshot did not contain it. The steps read _later_snapshot.
-- Parameters: data_type, first_seq.
CREATE TEMP TABLE _later_snapshot ON COMMIT DROP AS
SELECT DISTINCT ON (coalesce(integration_id, ''))
       coalesce(integration_id, '') AS integration_id, sync_run_id, first_seq, snapshot_at
FROM {target}.normalized_runs
WHERE snapshot = 'applied' AND data_type = %(data_type)s AND first_seq > %(first_seq)s
ORDER BY coalesce(integration_id, ''), first_seq;
