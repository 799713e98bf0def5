-- Last step of normalizing one run: record it in the ledger (again, if normalized before), then mark it
-- normalized in the landing store. Run as one text: psycopg2 fills the parameters in client side.
INSERT INTO {target}.normalized_runs AS r (
    sync_run_id, integration_id, data_type, first_seq, complete, record_events, records, records_changed, changes,
    applications, applications_changed, candidates_changed, type_error_events, normalized_at, models, snapshot,
    snapshot_note, snapshot_at, snapshot_deleted, changed_seq, table_changes)
VALUES (%(run_id)s, %(integration_id)s, %(data_type)s, %(first_seq)s, %(complete)s, %(record_events)s, %(records)s,
        %(records_changed)s, %(changes)s, %(applications)s, %(applications_changed)s, %(candidates_changed)s,
        %(type_error_events)s, now(), %(models)s, %(snapshot)s, %(snapshot_note)s, %(snapshot_at)s,
        %(snapshot_deleted)s, %(changed_seq)s, %(table_changes)s)
ON CONFLICT (sync_run_id) DO UPDATE SET
    complete = excluded.complete,
    record_events = excluded.record_events,
    records = excluded.records,
    records_changed = excluded.records_changed,
    changes = excluded.changes,
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
    changed_seq = excluded.changed_seq,
    table_changes = excluded.table_changes,
    times_normalized = r.times_normalized + 1;

UPDATE {landing}.sync_runs
SET normalized_at = now()
WHERE sync_run_id = %(run_id)s AND complete_at IS NOT NULL;
