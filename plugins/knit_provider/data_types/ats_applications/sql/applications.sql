-- Step 2: write the run's applications. A stored row moves to a new version only when it is higher:
--   version wins: (version_first_seq, version_seq) of the run's top event is higher: is_deleted,
--                 deleted_at, the snapshot_* columns and the version_* columns follow it;
--   data wins:    (data_first_seq, data_seq) of the run's top new/modified is higher: the data
--                 columns, the raw models and the child lists follow it.
-- When the run's top event is alive and a snapshot applied to this schema is later (an initial sync
-- normalized before this older run), the application is deleted as of the earliest such snapshot:
-- it did not contain the application, whose latest event is older (_later_snapshot, made by the runner).
-- Stored rows are updated, then new ones inserted with a plain INSERT (cheaper than ON CONFLICT
-- for an initial run's million rows); the caller holds the integration's advisory lock, so no
-- other writer can insert the same key in between. The applications that changed go to _changed.
-- Parameters: run_id, first_seq, first_received_at, last_received_at.
CREATE TEMP TABLE _changed (
    integration_id  text    NOT NULL,
    application_id  text    NOT NULL,
    data_won        boolean NOT NULL
) ON COMMIT DROP;

WITH updated AS (
    UPDATE {target}.ats_applications r SET
        candidate_id = CASE WHEN s.data_wins THEN s.candidate_id ELSE r.candidate_id END,
        job_id = CASE WHEN s.data_wins THEN s.job_id ELSE r.job_id END,
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
        custom_fields = CASE WHEN s.data_wins THEN s.custom_fields ELSE r.custom_fields END,
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
        SELECT a.integration_id, a.application_id,
               d.candidate_id, d.job_id,
               d.status, d.origin, d.applied_at, d.updated_at, d.stage_id, d.stage_name,
               d.rejection_reason, d.rejected_at, d.owner_id, d.owner_email,
               {target}.j_obj(ev.payload -> 'eventData') AS models, d.custom_fields,
               t.is_delete OR ls.sync_run_id IS NOT NULL AS is_deleted,
               CASE WHEN t.is_delete THEN t.observed_at ELSE ls.snapshot_at END AS deleted_at,
               CASE WHEN NOT t.is_delete THEN ls.sync_run_id END AS snapshot_run_id,
               CASE WHEN NOT t.is_delete THEN ls.first_seq END AS snapshot_first_seq,
               t.seq AS version_seq, t.event_id AS version_event_id,
               d.seq AS data_seq, d.event_id AS data_event_id,
               d.seq IS NOT NULL AND (cur.data_seq IS NULL
                   OR (%(first_seq)s, d.seq) > (cur.data_first_seq, cur.data_seq)) AS data_wins,
               (%(first_seq)s, t.seq) > (cur.version_first_seq, cur.version_seq) AS version_wins
        FROM _run_apps a
        JOIN {target}.ats_applications cur
          ON cur.integration_id = a.integration_id AND cur.application_id = a.application_id
        JOIN _run_events t ON t.seq = a.top_seq
        LEFT JOIN _run_events d ON d.seq = a.data_seq
        LEFT JOIN {landing}.events ev ON ev.sync_run_id = %(run_id)s AND ev.seq = a.data_seq
            AND ev.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
        LEFT JOIN _later_snapshot ls ON ls.integration_id = a.integration_id
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
        data_run_id, data_first_seq, data_seq, data_event_id, snapshot_run_id, snapshot_first_seq, custom_fields)
    SELECT a.integration_id, a.application_id,
           CASE WHEN d.seq IS NOT NULL THEN d.candidate_id ELSE t.candidate_id END,
           CASE WHEN d.seq IS NOT NULL THEN d.job_id ELSE t.job_id END,
           d.status, d.origin, d.applied_at, d.updated_at, d.stage_id, d.stage_name,
           d.rejection_reason, d.rejected_at, d.owner_id, d.owner_email,
           t.is_delete OR ls.sync_run_id IS NOT NULL,
           CASE WHEN t.is_delete THEN t.observed_at ELSE ls.snapshot_at END,
           {target}.j_obj(ev.payload -> 'eventData'),
           %(run_id)s, %(first_seq)s, t.seq, t.event_id,
           CASE WHEN d.seq IS NOT NULL THEN %(run_id)s END,
           CASE WHEN d.seq IS NOT NULL THEN %(first_seq)s::bigint END,
           d.seq, d.event_id,
           CASE WHEN NOT t.is_delete THEN ls.sync_run_id END,
           CASE WHEN NOT t.is_delete THEN ls.first_seq END,
           d.custom_fields
    FROM _run_apps a
    JOIN _run_events t ON t.seq = a.top_seq
    LEFT JOIN _run_events d ON d.seq = a.data_seq
    LEFT JOIN {landing}.events ev ON ev.sync_run_id = %(run_id)s AND ev.seq = a.data_seq
        AND ev.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
    LEFT JOIN _later_snapshot ls ON ls.integration_id = a.integration_id
    WHERE NOT EXISTS (SELECT 1 FROM {target}.ats_applications cur
                      WHERE cur.integration_id = a.integration_id AND cur.application_id = a.application_id)
    RETURNING integration_id, application_id, data_seq IS NOT NULL AS data_won
)
INSERT INTO _changed (integration_id, application_id, data_won)
SELECT integration_id, application_id, data_won FROM inserted;

-- An application never seen alive has only the ids its record.deleted events carried: each id from
-- the highest deletion that carries it, among the normalized runs' and this run's. A deletion whose
-- ids are empty (Knit's sample) therefore never erases an id, in whatever order runs come.
WITH never_alive AS (
    SELECT r.integration_id, r.application_id
    FROM {target}.ats_applications r
    JOIN _run_apps a ON a.integration_id = r.integration_id AND a.application_id = r.application_id
    WHERE a.data_seq IS NULL AND r.data_seq IS NULL
), deletions AS (
    SELECT v.integration_id, v.application_id, v.first_seq, v.seq,
           {target}.j_id(ev.payload #> '{eventData,candidateId}') AS candidate_id,
           {target}.j_id(ev.payload #> '{eventData,jobId}') AS job_id
    FROM never_alive n
    JOIN {target}.ats_application_versions v
      ON v.integration_id = n.integration_id AND v.application_id = n.application_id
    JOIN {landing}.events ev ON ev.sync_run_id = v.sync_run_id AND ev.seq = v.seq
    UNION ALL
    -- What the row holds, last: the ids of deletions whose events retention has since removed.
    SELECT r.integration_id, r.application_id, -1, -1, r.candidate_id, r.job_id
    FROM never_alive n
    JOIN {target}.ats_applications r ON r.integration_id = n.integration_id AND r.application_id = n.application_id
    UNION ALL
    SELECT e.integration_id, e.application_id, %(first_seq)s, e.seq, e.candidate_id, e.job_id
    FROM never_alive n
    JOIN _run_events e ON e.integration_id = n.integration_id AND e.application_id = n.application_id
), ids AS (
    SELECT integration_id, application_id,
           (array_agg(candidate_id ORDER BY first_seq DESC, seq DESC)
               FILTER (WHERE candidate_id IS NOT NULL))[1] AS candidate_id,
           (array_agg(job_id ORDER BY first_seq DESC, seq DESC) FILTER (WHERE job_id IS NOT NULL))[1] AS job_id
    FROM deletions
    GROUP BY integration_id, application_id
), fixed AS (
    UPDATE {target}.ats_applications r SET candidate_id = i.candidate_id, job_id = i.job_id
    FROM ids i
    WHERE r.integration_id = i.integration_id AND r.application_id = i.application_id
      AND (r.candidate_id, r.job_id) IS DISTINCT FROM (i.candidate_id, i.job_id)
    RETURNING r.integration_id, r.application_id
)
INSERT INTO _changed (integration_id, application_id, data_won)
SELECT f.integration_id, f.application_id, false
FROM fixed f
WHERE NOT EXISTS (SELECT 1 FROM _changed c
                  WHERE c.integration_id = f.integration_id AND c.application_id = f.application_id);

ANALYZE _changed;
