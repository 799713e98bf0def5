-- Step 1 of normalizing one ats_jobs run: read every record event of the run once and keep its
-- typed fields in a temporary table, as ats_applications' run_events.sql does (each level fenced by
-- OFFSET 0 so a value is extracted and parsed once; each JSON value taken from its parent object):
--   envelope, models, raw: eventData, then its models, then the info fields,
--   texts:  the text / object readings of the raw values,
--   parsed: timestamps,
--   outer:  which values were sent but unusable (wrong JSON type, unparsable time).
-- Ids are read as text and stored with '' as NULL. A job's own id: the envelope's recordId, else
-- info.id, else (a deletion) eventData.jobId. The child lists are read again from the payload by
-- children.sql, for the jobs whose data this run sets; here only their elements are checked.
-- Parameters: run_id, integration_id (the run's), started_at (Knit's start of the run), first_received_at and
-- last_received_at (its span of arrival), may_hold_late_duplicates.
CREATE TEMP TABLE _run_events ON COMMIT DROP AS
SELECT seq, event_id, event_type, is_delete, integration_id,
       coalesce(record_id, nullif(info_id, ''), nullif(deleted_job_id, '')) AS job_id,
       title, description, status, is_confidential, job_codes, info_url, apply_url,
       created_at, updated_at, closed_at,
       -- Which of Knit's models the event carries (a key present, even if null): bits in the order
       -- of run_counts.sql. A snapshot must carry what earlier runs carried.
       CASE WHEN NOT is_delete THEN ((data ? 'info')::int + 2 * (data ? 'departments')::int
                                     + 4 * (data ? 'offices')::int + 8 * (data ? 'hiringManagers')::int
                                     + 16 * (data ? 'recruiters')::int + 32 * (data ? 'stages')::int
                                     + 64 * (data ? 'rawValues')::int + 128 * (data ? 'jobPosts')::int
                                     + 256 * (data ? 'jobCompensation')::int
                                     + 512 * (data ? 'jobQuestions')::int
                                     + 1024 * (data ? 'jobRequirements')::int
                                     + 2048 * (data ? 'jobInfoEnhanced')::int)
       END AS models_mask,
       -- Deletion times: Knit's updatedAt, else when Knit started the run, else when the event
       -- landed. All three are stored facts, so re-normalizing gives the same time.
       coalesce(updated_at, %(started_at)s::timestamptz, received_at) AS observed_at,
       CASE WHEN is_delete THEN
           {target}.unusable(r_data, data IS NOT NULL)
           OR {target}.unusable(r_deleted_job_id, deleted_job_id IS NOT NULL)
       ELSE
           {target}.unusable(r_data, data IS NOT NULL)
           OR {target}.unusable(r_info, info IS NOT NULL)
           OR {target}.unusable(r_info_id, info_id IS NOT NULL)
           OR {target}.unusable(r_title, title IS NOT NULL)
           OR {target}.unusable(r_description, description IS NOT NULL)
           OR {target}.unusable(r_status, status IS NOT NULL)
           OR {target}.unusable(r_is_confidential, is_confidential IS NOT NULL)
           OR {target}.unusable(r_info_url, info_url IS NOT NULL)
           OR {target}.unusable(r_apply_url, apply_url IS NOT NULL)
           OR {target}.unusable(r_created_at, created_at IS NOT NULL)
           OR {target}.unusable(r_updated_at, updated_at IS NOT NULL)
           OR {target}.unusable(r_closed_at, closed_at IS NOT NULL)
           OR {target}.unusable(r_departments, {target}.j_arr(r_departments) IS NOT NULL)
           OR {target}.unusable(r_offices, {target}.j_arr(r_offices) IS NOT NULL)
           OR {target}.unusable(r_hiring_managers, {target}.j_arr(r_hiring_managers) IS NOT NULL)
           OR {target}.unusable(r_recruiters, {target}.j_arr(r_recruiters) IS NOT NULL)
           OR {target}.unusable(r_stages, {target}.j_arr(r_stages) IS NOT NULL)
           -- List elements must be objects with usable fields, and one bad element marks the event.
           OR EXISTS (SELECT 1 FROM jsonb_array_elements({target}.j_arr(r_departments)) x(v)
                      WHERE jsonb_typeof(v) <> 'object'
                         OR {target}.wrong_text(v -> 'id') OR {target}.wrong_text(v -> 'name'))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements({target}.j_arr(r_offices)) x(v)
                      WHERE jsonb_typeof(v) <> 'object'
                         OR {target}.wrong_text(v -> 'id') OR {target}.wrong_text(v -> 'name')
                         OR {target}.wrong_location(v -> 'location'))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements({target}.j_arr(r_stages)) x(v)
                      WHERE jsonb_typeof(v) <> 'object'
                         OR {target}.wrong_text(v -> 'id') OR {target}.wrong_text(v -> 'name')
                         OR {target}.wrong_text(v -> 'text'))
           OR EXISTS (SELECT 1
                      FROM jsonb_array_elements(coalesce({target}.j_arr(r_hiring_managers), '[]')
                                                || coalesce({target}.j_arr(r_recruiters), '[]')) x(v)
                      WHERE jsonb_typeof(v) <> 'object'
                         OR {target}.wrong_text(v -> 'id') OR {target}.wrong_text(v -> 'email')
                         OR {target}.wrong_text(v -> 'employeeId'))
       END AS has_type_errors
FROM (
    SELECT texts.*,
           {target}.text_ts(created_at_text) AS created_at,
           {target}.text_ts(updated_at_text) AS updated_at,
           {target}.text_ts(closed_at_text) AS closed_at
    FROM (
        SELECT raw.*,
               {target}.j_obj(r_data) AS data,
               {target}.j_obj(r_info) AS info,
               {target}.j_text(r_info_id) AS info_id,
               {target}.j_text(r_deleted_job_id) AS deleted_job_id,
               {target}.j_text(r_title) AS title,
               {target}.j_text(r_description) AS description,
               {target}.j_text(r_status) AS status,
               CASE WHEN jsonb_typeof(r_is_confidential) = 'boolean' THEN r_is_confidential::boolean END
                   AS is_confidential,
               -- Kept as sent: Knit does not document its type.
               CASE WHEN jsonb_typeof(r_job_codes) <> 'null' THEN r_job_codes END AS job_codes,
               {target}.j_text(r_info_url) AS info_url,
               {target}.j_text(r_apply_url) AS apply_url,
               {target}.j_text(r_created_at) AS created_at_text,
               {target}.j_text(r_updated_at) AS updated_at_text,
               {target}.j_text(r_closed_at) AS closed_at_text
        FROM (
            SELECT models.*,
                   r_info -> 'id' AS r_info_id,
                   r_info -> 'title' AS r_title,
                   r_info -> 'description' AS r_description,
                   r_info -> 'status' AS r_status,
                   r_info -> 'isConfidential' AS r_is_confidential,
                   r_info -> 'jobCodes' AS r_job_codes,
                   r_info -> 'infoUrl' AS r_info_url,
                   r_info -> 'applyUrl' AS r_apply_url,
                   r_info -> 'createdAt' AS r_created_at,
                   r_info -> 'updatedAt' AS r_updated_at,
                   r_info -> 'closedAt' AS r_closed_at
            FROM (
                SELECT envelope.*,
                       r_data -> 'info' AS r_info,
                       r_data -> 'departments' AS r_departments,
                       r_data -> 'offices' AS r_offices,
                       r_data -> 'hiringManagers' AS r_hiring_managers,
                       r_data -> 'recruiters' AS r_recruiters,
                       r_data -> 'stages' AS r_stages,
                       r_data -> 'jobId' AS r_deleted_job_id
                FROM (
                    -- land_events stores '' ids as NULL; events landed before it did may hold ''.
                    SELECT e.seq, e.event_id, e.event_type, e.received_at, nullif(e.record_id, '') AS record_id,
                           e.event_type = 'record.deleted' AS is_delete,
                           coalesce(e.integration_id, %(integration_id)s, '') AS integration_id,
                           e.payload -> 'eventData' AS r_data
                    FROM {landing}.events e
                    WHERE e.sync_run_id = %(run_id)s
                      -- The run's span of arrival: only the partitions of that span are read.
                      AND e.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
                      AND e.event_type IN ('record.new', 'record.modified', 'record.deleted')
                    OFFSET 0
                ) envelope
                OFFSET 0
            ) models
            OFFSET 0
        ) raw
        OFFSET 0
    ) texts
    OFFSET 0
) parsed;

-- A redelivery after the dedup window lands again with a higher seq: only its first copy counts
-- (as for applications; only a run spanning more than the window can hold one).
DELETE FROM _run_events r
USING _run_events d
WHERE %(may_hold_late_duplicates)s AND d.event_id = r.event_id AND d.seq < r.seq;

-- Per job: the run's highest event of any type, and its highest new/modified.
CREATE TEMP TABLE _run_jobs ON COMMIT DROP AS
SELECT integration_id,
       job_id,
       max(seq) AS top_seq,
       max(seq) FILTER (WHERE NOT is_delete) AS data_seq
FROM _run_events
WHERE job_id IS NOT NULL
GROUP BY integration_id, job_id;

CREATE UNIQUE INDEX ON _run_events (seq);
ANALYZE _run_events (seq, integration_id, job_id, is_delete);
ANALYZE _run_jobs;
