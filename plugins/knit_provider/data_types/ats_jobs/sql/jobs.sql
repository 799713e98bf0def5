-- Step 2: write the run's jobs, exactly as applications.sql writes applications. A stored row moves
-- to a new version only when it is higher:
--   version wins: (version_first_seq, version_seq) of the run's top event is higher: is_deleted,
--                 deleted_at, the snapshot_* columns and the version_* columns follow it;
--   data wins:    (data_first_seq, data_seq) of the run's top new/modified is higher: the data
--                 columns, the raw models and the child lists follow it.
-- When the run's top event is alive and a snapshot applied to this schema is later (an initial sync
-- normalized before this older run), the job is deleted as of the earliest such snapshot.
-- Stored rows are updated, then new ones inserted (the caller holds the integration's advisory
-- lock, so no other writer inserts the same key in between). The jobs that changed go to _changed.
-- Parameters: run_id, first_seq, data_type, first_received_at, last_received_at.
CREATE TEMP TABLE _changed (
    integration_id  text    NOT NULL,
    job_id          text    NOT NULL,
    data_won        boolean NOT NULL
) ON COMMIT DROP;

WITH updated AS (
    UPDATE {target}.ats_jobs r SET
        title = CASE WHEN s.data_wins THEN s.title ELSE r.title END,
        description = CASE WHEN s.data_wins THEN s.description ELSE r.description END,
        status = CASE WHEN s.data_wins THEN s.status ELSE r.status END,
        is_confidential = CASE WHEN s.data_wins THEN s.is_confidential ELSE r.is_confidential END,
        job_codes = CASE WHEN s.data_wins THEN s.job_codes ELSE r.job_codes END,
        info_url = CASE WHEN s.data_wins THEN s.info_url ELSE r.info_url END,
        apply_url = CASE WHEN s.data_wins THEN s.apply_url ELSE r.apply_url END,
        created_at = CASE WHEN s.data_wins THEN s.created_at ELSE r.created_at END,
        updated_at = CASE WHEN s.data_wins THEN s.updated_at ELSE r.updated_at END,
        closed_at = CASE WHEN s.data_wins THEN s.closed_at ELSE r.closed_at END,
        models = CASE WHEN s.data_wins THEN s.models ELSE r.models END,
        data_run_id = CASE WHEN s.data_wins THEN %(run_id)s ELSE r.data_run_id END,
        data_first_seq = CASE WHEN s.data_wins THEN %(first_seq)s ELSE r.data_first_seq END,
        data_seq = CASE WHEN s.data_wins THEN s.data_seq ELSE r.data_seq END,
        data_event_id = CASE WHEN s.data_wins THEN s.data_event_id ELSE r.data_event_id END,
        is_deleted = CASE WHEN s.version_wins THEN s.is_deleted ELSE r.is_deleted END,
        deleted_at = CASE WHEN s.version_wins THEN s.deleted_at ELSE r.deleted_at END,
        snapshot_run_id = CASE WHEN s.version_wins THEN s.snapshot_run_id ELSE r.snapshot_run_id END,
        snapshot_first_seq = CASE WHEN s.version_wins THEN s.snapshot_first_seq ELSE r.snapshot_first_seq END,
        version_run_id = CASE WHEN s.version_wins THEN %(run_id)s ELSE r.version_run_id END,
        version_first_seq = CASE WHEN s.version_wins THEN %(first_seq)s ELSE r.version_first_seq END,
        version_seq = CASE WHEN s.version_wins THEN s.version_seq ELSE r.version_seq END,
        version_event_id = CASE WHEN s.version_wins THEN s.version_event_id ELSE r.version_event_id END
    FROM (
        SELECT j.integration_id, j.job_id,
               d.title, d.description, d.status, d.is_confidential, d.job_codes, d.info_url, d.apply_url,
               d.created_at, d.updated_at, d.closed_at,
               {target}.j_obj(ev.payload -> 'eventData') AS models,
               t.is_delete OR ls.sync_run_id IS NOT NULL AS is_deleted,
               CASE WHEN t.is_delete THEN t.observed_at ELSE ls.snapshot_at END AS deleted_at,
               CASE WHEN NOT t.is_delete THEN ls.sync_run_id END AS snapshot_run_id,
               CASE WHEN NOT t.is_delete THEN ls.first_seq END AS snapshot_first_seq,
               t.seq AS version_seq, t.event_id AS version_event_id,
               d.seq AS data_seq, d.event_id AS data_event_id,
               d.seq IS NOT NULL AND (cur.data_seq IS NULL
                   OR (%(first_seq)s, d.seq) > (cur.data_first_seq, cur.data_seq)) AS data_wins,
               (%(first_seq)s, t.seq) > (cur.version_first_seq, cur.version_seq) AS version_wins
        FROM _run_jobs j
        JOIN {target}.ats_jobs cur ON cur.integration_id = j.integration_id AND cur.job_id = j.job_id
        JOIN _run_events t ON t.seq = j.top_seq
        LEFT JOIN _run_events d ON d.seq = j.data_seq
        LEFT JOIN {landing}.events ev ON ev.sync_run_id = %(run_id)s AND ev.seq = j.data_seq
            AND ev.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
        LEFT JOIN _later_snapshot ls ON ls.integration_id = j.integration_id
    ) s
    WHERE r.integration_id = s.integration_id AND r.job_id = s.job_id
      AND (s.data_wins OR s.version_wins)
    RETURNING r.integration_id, r.job_id, s.data_wins
)
INSERT INTO _changed (integration_id, job_id, data_won)
SELECT integration_id, job_id, data_wins FROM updated;

WITH inserted AS (
    INSERT INTO {target}.ats_jobs (
        integration_id, job_id, title, description, status, is_confidential, job_codes, info_url,
        apply_url, created_at, updated_at, closed_at, is_deleted, deleted_at, models,
        version_run_id, version_first_seq, version_seq, version_event_id,
        data_run_id, data_first_seq, data_seq, data_event_id, snapshot_run_id, snapshot_first_seq)
    SELECT j.integration_id, j.job_id,
           d.title, d.description, d.status, d.is_confidential, d.job_codes, d.info_url, d.apply_url,
           d.created_at, d.updated_at, d.closed_at,
           t.is_delete OR ls.sync_run_id IS NOT NULL,
           CASE WHEN t.is_delete THEN t.observed_at ELSE ls.snapshot_at END,
           {target}.j_obj(ev.payload -> 'eventData'),
           %(run_id)s, %(first_seq)s, t.seq, t.event_id,
           CASE WHEN d.seq IS NOT NULL THEN %(run_id)s END,
           CASE WHEN d.seq IS NOT NULL THEN %(first_seq)s::bigint END,
           d.seq, d.event_id,
           CASE WHEN NOT t.is_delete THEN ls.sync_run_id END,
           CASE WHEN NOT t.is_delete THEN ls.first_seq END
    FROM _run_jobs j
    JOIN _run_events t ON t.seq = j.top_seq
    LEFT JOIN _run_events d ON d.seq = j.data_seq
    LEFT JOIN {landing}.events ev ON ev.sync_run_id = %(run_id)s AND ev.seq = j.data_seq
        AND ev.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
    LEFT JOIN _later_snapshot ls ON ls.integration_id = j.integration_id
    WHERE NOT EXISTS (SELECT 1 FROM {target}.ats_jobs cur
                      WHERE cur.integration_id = j.integration_id AND cur.job_id = j.job_id)
    RETURNING integration_id, job_id, data_seq IS NOT NULL AS data_won
)
INSERT INTO _changed (integration_id, job_id, data_won)
SELECT integration_id, job_id, data_won FROM inserted;

ANALYZE _changed;
