-- Step 2: upsert the run's applications. A row moves to a new version only when it is higher:
--   V (version wins): (version_first_seq, version_seq) of the run's top event is higher;
--   D (data wins):    (data_first_seq, data_seq) of the run's top new/modified is higher.
-- The applications that changed land in _changed; data_won marks those whose child lists must be
-- replaced. Parameters: run_id, first_seq.
CREATE TEMP TABLE _changed (
    integration_id  text    NOT NULL,
    application_id  text    NOT NULL,
    data_won        boolean NOT NULL
) ON COMMIT DROP;

WITH src AS (
    SELECT a.integration_id,
           a.application_id,
           -- Without any new/modified, the ids a record.deleted carries are all there is.
           CASE WHEN d.seq IS NOT NULL THEN d.candidate_id ELSE t.candidate_id END AS candidate_id,
           CASE WHEN d.seq IS NOT NULL THEN d.job_id ELSE t.job_id END AS job_id,
           d.status, d.origin, d.applied_at, d.updated_at, d.stage_id, d.stage_name,
           d.rejection_reason, d.rejected_at, d.owner_id, d.owner_email,
           t.is_delete AS is_deleted,
           CASE WHEN t.is_delete THEN t.observed_at END AS deleted_at,
           {target}.j_obj(ev.payload -> 'eventData') AS models,
           %(run_id)s::text AS version_run_id,
           %(first_seq)s::bigint AS version_first_seq,
           t.seq AS version_seq,
           t.event_id AS version_event_id,
           CASE WHEN d.seq IS NOT NULL THEN %(run_id)s::text END AS data_run_id,
           CASE WHEN d.seq IS NOT NULL THEN %(first_seq)s::bigint END AS data_first_seq,
           d.seq AS data_seq,
           d.event_id AS data_event_id
    FROM _run_apps a
    JOIN _run_events t ON t.seq = a.top_seq
    LEFT JOIN _run_events d ON d.seq = a.data_seq
    LEFT JOIN {landing}.events ev ON ev.seq = a.data_seq
), up AS (
    INSERT INTO {target}.ats_applications AS r (
        integration_id, application_id, candidate_id, job_id, status, origin, applied_at, updated_at,
        current_stage_id, current_stage_name, rejection_reason, rejected_at, owner_id, owner_email,
        is_deleted, deleted_at, models, version_run_id, version_first_seq, version_seq, version_event_id,
        data_run_id, data_first_seq, data_seq, data_event_id)
    SELECT * FROM src
    ON CONFLICT (integration_id, application_id) DO UPDATE SET
        candidate_id = CASE
            WHEN excluded.data_seq IS NOT NULL AND (r.data_seq IS NULL
                 OR (excluded.data_first_seq, excluded.data_seq) > (r.data_first_seq, r.data_seq))
            THEN excluded.candidate_id
            WHEN r.data_seq IS NULL AND excluded.data_seq IS NULL
                 AND (excluded.version_first_seq, excluded.version_seq) > (r.version_first_seq, r.version_seq)
            THEN excluded.candidate_id
            ELSE r.candidate_id END,
        job_id = CASE
            WHEN excluded.data_seq IS NOT NULL AND (r.data_seq IS NULL
                 OR (excluded.data_first_seq, excluded.data_seq) > (r.data_first_seq, r.data_seq))
            THEN excluded.job_id
            WHEN r.data_seq IS NULL AND excluded.data_seq IS NULL
                 AND (excluded.version_first_seq, excluded.version_seq) > (r.version_first_seq, r.version_seq)
            THEN excluded.job_id
            ELSE r.job_id END,
        (status, origin, applied_at, updated_at, current_stage_id, current_stage_name, rejection_reason,
         rejected_at, owner_id, owner_email, models, data_run_id, data_first_seq, data_seq, data_event_id) =
        (SELECT excluded.status, excluded.origin, excluded.applied_at, excluded.updated_at,
                excluded.current_stage_id, excluded.current_stage_name, excluded.rejection_reason,
                excluded.rejected_at, excluded.owner_id, excluded.owner_email, excluded.models,
                excluded.data_run_id, excluded.data_first_seq, excluded.data_seq, excluded.data_event_id
         WHERE excluded.data_seq IS NOT NULL AND (r.data_seq IS NULL
               OR (excluded.data_first_seq, excluded.data_seq) > (r.data_first_seq, r.data_seq))
         UNION ALL
         SELECT r.status, r.origin, r.applied_at, r.updated_at, r.current_stage_id, r.current_stage_name,
                r.rejection_reason, r.rejected_at, r.owner_id, r.owner_email, r.models,
                r.data_run_id, r.data_first_seq, r.data_seq, r.data_event_id
         WHERE NOT (excluded.data_seq IS NOT NULL AND (r.data_seq IS NULL
               OR (excluded.data_first_seq, excluded.data_seq) > (r.data_first_seq, r.data_seq)))),
        (is_deleted, deleted_at, version_run_id, version_first_seq, version_seq, version_event_id) =
        (SELECT excluded.is_deleted, excluded.deleted_at, excluded.version_run_id, excluded.version_first_seq,
                excluded.version_seq, excluded.version_event_id
         WHERE (excluded.version_first_seq, excluded.version_seq) > (r.version_first_seq, r.version_seq)
         UNION ALL
         SELECT r.is_deleted, r.deleted_at, r.version_run_id, r.version_first_seq, r.version_seq,
                r.version_event_id
         WHERE NOT (excluded.version_first_seq, excluded.version_seq) > (r.version_first_seq, r.version_seq))
    WHERE (excluded.version_first_seq, excluded.version_seq) > (r.version_first_seq, r.version_seq)
       OR (excluded.data_seq IS NOT NULL AND (r.data_seq IS NULL
           OR (excluded.data_first_seq, excluded.data_seq) > (r.data_first_seq, r.data_seq)))
    RETURNING r.integration_id, r.application_id, r.data_run_id
)
INSERT INTO _changed (integration_id, application_id, data_won)
SELECT integration_id, application_id, coalesce(data_run_id = %(run_id)s, false) FROM up;

ANALYZE _changed;
