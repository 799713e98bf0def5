-- Withdraw a snapshot: its initial_sync run no longer qualifies (normalize/snapshot.py says why).
-- Each record it deleted goes to the next applied snapshot later than its latest event, or is
-- alive again (a snapshot deletes only records whose latest event is alive), so the rows end
-- as if the snapshot had never applied. The ledger row says it was skipped and why.
-- Parameters: snapshot_run_id, snapshot_first_seq, integration, note.
UPDATE {target}.{record_table} a
SET snapshot_run_id = n.sync_run_id, snapshot_first_seq = n.first_seq,
    is_deleted = n.sync_run_id IS NOT NULL, deleted_at = n.snapshot_at
FROM {target}.{record_table} o
LEFT JOIN LATERAL (
    SELECT s.sync_run_id, s.first_seq, s.snapshot_at
    FROM {target}.normalized_runs s
    WHERE s.snapshot = 'applied' AND coalesce(s.integration_id, '') = o.integration_id
      AND s.data_type = %(data_type)s
      AND s.first_seq > o.version_first_seq AND s.sync_run_id <> %(snapshot_run_id)s
    ORDER BY s.first_seq
    LIMIT 1
) n ON true
WHERE o.integration_id = %(integration)s AND o.snapshot_run_id IS NOT NULL
  AND o.snapshot_first_seq = %(snapshot_first_seq)s
  AND a.integration_id = o.integration_id AND a.{record_key} = o.{record_key};

UPDATE {target}.normalized_runs
SET snapshot = 'skipped', snapshot_note = %(note)s, snapshot_deleted = NULL
WHERE sync_run_id = %(snapshot_run_id)s;
