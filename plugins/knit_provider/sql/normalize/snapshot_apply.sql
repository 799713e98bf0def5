-- Step 6, initial_sync runs that qualify as snapshots (normalize/snapshot.py decides): Knit sent
-- every active record, so one of the integration's records whose latest event is alive
-- and older than this run was not among them: deleted as of this run. A record the run did
-- contain has its latest event in this run or later, and one already deleted by its own
-- record.deleted keeps that deletion. Of several snapshots that left a record out, the
-- earliest says when it was gone, so rows a later snapshot deleted move to this one.
-- Parameters: snapshot_run_id, snapshot_first_seq, snapshot_at, integration.
UPDATE {target}.{record_table}
SET is_deleted = true, deleted_at = %(snapshot_at)s,
    snapshot_run_id = %(snapshot_run_id)s, snapshot_first_seq = %(snapshot_first_seq)s
WHERE integration_id = %(integration)s
  AND version_first_seq < %(snapshot_first_seq)s
  -- Alive: the latest event is the latest new/modified.
  AND (version_first_seq, version_seq) = (data_first_seq, data_seq)
  AND (snapshot_first_seq IS NULL OR snapshot_first_seq > %(snapshot_first_seq)s
       OR (snapshot_run_id = %(snapshot_run_id)s AND deleted_at IS DISTINCT FROM %(snapshot_at)s));

-- The records this snapshot deletes now (read through the index of snapshot-deleted rows).
SELECT count(*)
FROM {target}.{record_table}
WHERE integration_id = %(integration)s AND snapshot_run_id IS NOT NULL
  AND snapshot_first_seq = %(snapshot_first_seq)s;
