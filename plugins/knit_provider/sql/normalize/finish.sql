-- Step 7: remember the run in this schema's ledger and, for a complete run, mark it normalized in
-- the landing store (a forced, incomplete run stays pending so it is normalized again once done).
-- Parameters: run_id, integration_id, first_seq, complete, record_events, applications,
-- applications_changed, candidates_changed, type_error_events, models, snapshot, snapshot_note,
-- snapshot_at, snapshot_deleted.
INSERT INTO {target}.normalized_runs AS r (
    sync_run_id, integration_id, first_seq, complete, record_events, applications, applications_changed,
    candidates_changed, type_error_events, normalized_at, models, snapshot, snapshot_note, snapshot_at,
    snapshot_deleted)
VALUES (%(run_id)s, %(integration_id)s, %(first_seq)s, %(complete)s, %(record_events)s, %(applications)s,
        %(applications_changed)s, %(candidates_changed)s, %(type_error_events)s, now(), %(models)s,
        %(snapshot)s, %(snapshot_note)s, %(snapshot_at)s, %(snapshot_deleted)s)
ON CONFLICT (sync_run_id) DO UPDATE SET
    complete = excluded.complete,
    record_events = excluded.record_events,
    applications = excluded.applications,
    applications_changed = excluded.applications_changed,
    candidates_changed = excluded.candidates_changed,
    type_error_events = excluded.type_error_events,
    normalized_at = excluded.normalized_at,
    models = excluded.models,
    snapshot = excluded.snapshot,
    snapshot_note = excluded.snapshot_note,
    snapshot_at = excluded.snapshot_at,
    snapshot_deleted = excluded.snapshot_deleted,
    times_normalized = r.times_normalized + 1;

UPDATE {landing}.sync_runs
SET normalized_at = now()
WHERE sync_run_id = %(run_id)s AND complete_at IS NOT NULL;
