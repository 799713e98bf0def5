-- Step 5: record every record event of the run as a version of its application, then rebuild
-- the stage history of each application that gained (or corrected) a version, from all the
-- versions normalized so far. The last run to touch an application therefore sees all of them,
-- whatever the order runs came in. Parameters: run_id, first_seq.
CREATE TEMP TABLE _touched (
    integration_id  text NOT NULL,
    application_id  text NOT NULL
) ON COMMIT DROP;

-- A run normalized early with --force may have landed its start time only later: correct it.
WITH corrected AS (
    UPDATE {target}.ats_application_versions v SET
        stage_id = CASE WHEN NOT e.is_delete THEN e.stage_id END,
        stage_name = CASE WHEN NOT e.is_delete THEN e.stage_name END,
        observed_at = e.observed_at
    FROM _run_events e
    WHERE v.integration_id = e.integration_id AND v.application_id = e.application_id
      AND v.first_seq = %(first_seq)s AND v.seq = e.seq
      AND (v.stage_id, v.stage_name, v.observed_at) IS DISTINCT FROM
          (CASE WHEN NOT e.is_delete THEN e.stage_id END, CASE WHEN NOT e.is_delete THEN e.stage_name END,
           e.observed_at)
    RETURNING v.integration_id, v.application_id
)
INSERT INTO _touched SELECT * FROM corrected;

WITH added AS (
    INSERT INTO {target}.ats_application_versions (
        integration_id, application_id, first_seq, seq, sync_run_id, event_id, event_type,
        stage_id, stage_name, observed_at)
    SELECT e.integration_id, e.application_id, %(first_seq)s, e.seq, %(run_id)s, e.event_id, e.event_type,
           CASE WHEN NOT e.is_delete THEN e.stage_id END,
           CASE WHEN NOT e.is_delete THEN e.stage_name END,
           e.observed_at
    FROM _run_events e
    WHERE e.application_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM {target}.ats_application_versions v
                      WHERE v.integration_id = e.integration_id AND v.application_id = e.application_id
                        AND v.first_seq = %(first_seq)s AND v.seq = e.seq)
    RETURNING integration_id, application_id
)
INSERT INTO _touched SELECT DISTINCT * FROM added;

ANALYZE _touched;

DELETE FROM {target}.ats_application_stage_history h
USING (SELECT DISTINCT * FROM _touched) t
WHERE h.integration_id = t.integration_id AND h.application_id = t.application_id;

INSERT INTO {target}.ats_application_stage_history (
    integration_id, application_id, position, stage_id, stage_name, entered_at, left_at, first_seq, seq)
SELECT integration_id, application_id,
       row_number() OVER w,
       stage_id, stage_name, observed_at,
       lead(observed_at) OVER w,
       first_seq, seq
FROM (
    SELECT v.integration_id, v.application_id, v.first_seq, v.seq, v.stage_id, v.stage_name, v.observed_at,
           coalesce(v.stage_id, v.stage_name) AS stage_key,
           lag(coalesce(v.stage_id, v.stage_name)) OVER (
               PARTITION BY v.integration_id, v.application_id ORDER BY v.first_seq, v.seq) AS previous_key
    FROM {target}.ats_application_versions v
    JOIN (SELECT DISTINCT * FROM _touched) t ON t.integration_id = v.integration_id AND t.application_id = v.application_id
    WHERE v.stage_id IS NOT NULL OR v.stage_name IS NOT NULL
) observed
WHERE previous_key IS DISTINCT FROM stage_key
WINDOW w AS (PARTITION BY integration_id, application_id ORDER BY first_seq, seq);
