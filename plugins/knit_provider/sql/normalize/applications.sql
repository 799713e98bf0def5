-- Step 2: write the run's applications. A stored row moves to a new version only when it is higher:
--   version wins: (version_first_seq, version_seq) of the run's top event is higher: is_deleted,
--                 deleted_at and the version_* columns follow it;
--   data wins:    (data_first_seq, data_seq) of the run's top new/modified is higher: the data
--                 columns, the raw models and the child lists follow it.
-- Stored rows are updated, then new ones inserted with a plain INSERT (cheaper than ON CONFLICT
-- for an initial run's million rows); the caller holds the integration's advisory lock, so no
-- other writer can insert the same key in between. The applications that changed go to _changed.
-- Parameters: run_id, first_seq.
CREATE TEMP TABLE _changed (
    integration_id  text    NOT NULL,
    application_id  text    NOT NULL,
    data_won        boolean NOT NULL
) ON COMMIT DROP;

WITH updated AS (
    UPDATE {target}.ats_applications r SET
        candidate_id = CASE WHEN s.data_wins OR s.ids_from_delete THEN s.candidate_id ELSE r.candidate_id END,
        job_id = CASE WHEN s.data_wins OR s.ids_from_delete THEN s.job_id ELSE r.job_id END,
        status = CASE WHEN s.data_wins THEN s.status ELSE r.status END,
        origin = CASE WHEN s.data_wins THEN s.origin ELSE r.origin END,
        applied_at = CASE WHEN s.data_wins THEN s.applied_at ELSE r.applied_at END,
        updated_at = CASE WHEN s.data_wins THEN s.updated_at ELSE r.updated_at END,
        current_stage_id = CASE WHEN s.data_wins THEN s.stage_id ELSE r.current_stage_id END,
        current_stage_name = CASE WHEN s.data_wins THEN s.stage_name ELSE r.current_stage_name END,
        rejection_reason = CASE WHEN s.data_wins THEN s.rejection_reason ELSE r.rejection_reason END,
        rejected_at = CASE WHEN s.data_wins THEN s.rejected_at ELSE r.rejected_at END,
        owner_id = CASE WHEN s.data_wins THEN s.owner_id ELSE r.owner_id END,
        owner_email = CASE WHEN s.data_wins THEN s.owner_email ELSE r.owner_email END,
        models = CASE WHEN s.data_wins THEN s.models ELSE r.models END,
        data_run_id = CASE WHEN s.data_wins THEN %(run_id)s ELSE r.data_run_id END,
        data_first_seq = CASE WHEN s.data_wins THEN %(first_seq)s ELSE r.data_first_seq END,
        data_seq = CASE WHEN s.data_wins THEN s.data_seq ELSE r.data_seq END,
        data_event_id = CASE WHEN s.data_wins THEN s.data_event_id ELSE r.data_event_id END,
        is_deleted = CASE WHEN s.version_wins THEN s.is_deleted ELSE r.is_deleted END,
        deleted_at = CASE WHEN s.version_wins THEN s.deleted_at ELSE r.deleted_at END,
        version_run_id = CASE WHEN s.version_wins THEN %(run_id)s ELSE r.version_run_id END,
        version_first_seq = CASE WHEN s.version_wins THEN %(first_seq)s ELSE r.version_first_seq END,
        version_seq = CASE WHEN s.version_wins THEN s.version_seq ELSE r.version_seq END,
        version_event_id = CASE WHEN s.version_wins THEN s.version_event_id ELSE r.version_event_id END
    FROM (
        SELECT w.*,
               -- Without any new/modified stored or in this run, the ids a record.deleted carries are
               -- all there is: the highest deletion's.
               NOT w.data_wins AND w.version_wins AND w.stored_data_seq IS NULL AND w.data_seq IS NULL
                   AS ids_from_delete
        FROM (
            SELECT a.integration_id, a.application_id,
                   CASE WHEN d.seq IS NOT NULL THEN d.candidate_id ELSE t.candidate_id END AS candidate_id,
                   CASE WHEN d.seq IS NOT NULL THEN d.job_id ELSE t.job_id END AS job_id,
                   d.status, d.origin, d.applied_at, d.updated_at, d.stage_id, d.stage_name,
                   d.rejection_reason, d.rejected_at, d.owner_id, d.owner_email,
                   {target}.j_obj(ev.payload -> 'eventData') AS models,
                   t.is_delete AS is_deleted,
                   CASE WHEN t.is_delete THEN t.observed_at END AS deleted_at,
                   t.seq AS version_seq, t.event_id AS version_event_id,
                   d.seq AS data_seq, d.event_id AS data_event_id,
                   cur.data_seq AS stored_data_seq,
                   d.seq IS NOT NULL AND (cur.data_seq IS NULL
                       OR (%(first_seq)s, d.seq) > (cur.data_first_seq, cur.data_seq)) AS data_wins,
                   (%(first_seq)s, t.seq) > (cur.version_first_seq, cur.version_seq) AS version_wins
            FROM _run_apps a
            JOIN {target}.ats_applications cur
              ON cur.integration_id = a.integration_id AND cur.application_id = a.application_id
            JOIN _run_events t ON t.seq = a.top_seq
            LEFT JOIN _run_events d ON d.seq = a.data_seq
            LEFT JOIN {landing}.events ev ON ev.seq = a.data_seq
        ) w
    ) s
    WHERE r.integration_id = s.integration_id AND r.application_id = s.application_id
      AND (s.data_wins OR s.version_wins)
    RETURNING r.integration_id, r.application_id, s.data_wins
)
INSERT INTO _changed (integration_id, application_id, data_won)
SELECT integration_id, application_id, data_wins FROM updated;

WITH inserted AS (
    INSERT INTO {target}.ats_applications (
        integration_id, application_id, candidate_id, job_id, status, origin, applied_at, updated_at,
        current_stage_id, current_stage_name, rejection_reason, rejected_at, owner_id, owner_email,
        is_deleted, deleted_at, models, version_run_id, version_first_seq, version_seq, version_event_id,
        data_run_id, data_first_seq, data_seq, data_event_id)
    SELECT a.integration_id, a.application_id,
           CASE WHEN d.seq IS NOT NULL THEN d.candidate_id ELSE t.candidate_id END,
           CASE WHEN d.seq IS NOT NULL THEN d.job_id ELSE t.job_id END,
           d.status, d.origin, d.applied_at, d.updated_at, d.stage_id, d.stage_name,
           d.rejection_reason, d.rejected_at, d.owner_id, d.owner_email,
           t.is_delete,
           CASE WHEN t.is_delete THEN t.observed_at END,
           {target}.j_obj(ev.payload -> 'eventData'),
           %(run_id)s, %(first_seq)s, t.seq, t.event_id,
           CASE WHEN d.seq IS NOT NULL THEN %(run_id)s END,
           CASE WHEN d.seq IS NOT NULL THEN %(first_seq)s::bigint END,
           d.seq, d.event_id
    FROM _run_apps a
    JOIN _run_events t ON t.seq = a.top_seq
    LEFT JOIN _run_events d ON d.seq = a.data_seq
    LEFT JOIN {landing}.events ev ON ev.seq = a.data_seq
    WHERE NOT EXISTS (SELECT 1 FROM {target}.ats_applications cur
                      WHERE cur.integration_id = a.integration_id AND cur.application_id = a.application_id)
    RETURNING integration_id, application_id, data_seq IS NOT NULL AS data_won
)
INSERT INTO _changed (integration_id, application_id, data_won)
SELECT integration_id, application_id, data_won FROM inserted;

ANALYZE _changed;
