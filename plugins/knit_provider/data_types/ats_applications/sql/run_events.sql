-- Step 1 of normalizing one run: read every record event of the run once (through the landing
-- index on (sync_run_id, seq)) and keep its typed fields in a temporary table, so the later
-- statements never parse a payload again except to copy the raw models and the child lists.
--
-- The nesting is on purpose: each level is fenced (OFFSET 0) so that a value is extracted and
-- parsed once (inlined helper functions repeat their argument expressions), and each JSON value
-- is taken from its parent object with one key lookup instead of a path walk from the top:
--   envelope, models, people, raw: eventData, then its models, then their fields,
--   texts:  the text / object / list readings of the raw values,
--   parsed: timestamps,
--   outer:  which values were sent but unusable (wrong JSON type, unparsable time).
-- Ids are read as text (so a wrong JSON type is counted) and stored with '' as NULL: Knit sends ""
-- for ids it does not have (its record.deleted sample), and an empty id must never become a key.
-- A deletion's own id: the envelope's recordId, else eventData.applicationId.
-- Knit's documented shapes and our first guesses are both read (schema.sql's j_stage and
-- location_text): a stage {id, text} or {id, name}, bare or nested as {"currentStage": {...}}; a
-- candidate location as a string or an object.
-- Parameters: run_id, integration_id (the run's), started_at (Knit's start of the run), first_received_at and
-- last_received_at (its span of arrival), may_hold_late_duplicates.
CREATE TEMP TABLE _run_events ON COMMIT DROP AS
SELECT seq, event_id, event_type, is_delete, integration_id,
       coalesce(record_id, nullif(info_id, ''), nullif(deleted_application_id, '')) AS application_id,
       nullif(CASE WHEN is_delete THEN deleted_candidate_id ELSE candidate_id END, '') AS candidate_id,
       candidate IS NOT NULL AS has_candidate,
       nullif(CASE WHEN is_delete THEN deleted_job_id ELSE job_id END, '') AS job_id,
       status, origin, applied_at, updated_at, nullif(stage_id, '') AS stage_id, stage_name, rejection_reason,
       rejected_at, nullif(owner_id, '') AS owner_id, owner_email,
       -- Which of Knit's six models the event carries (a key present, even if null): bits in the
       -- order of the models in the ats_applications spec. A snapshot must carry what earlier runs carried.
       CASE WHEN NOT is_delete THEN ((data ? 'info')::int + 2 * (data ? 'currentStage')::int
                                     + 4 * (data ? 'interviews')::int + 8 * (data ? 'rejection')::int
                                     + 16 * (data ? 'offers')::int + 32 * (data ? 'attachments')::int)
       END AS models_mask,
       first_name, last_name, emails, phones, links,
       CASE WHEN jsonb_typeof(r_location) <> 'null' THEN r_location END AS location,
       {target}.location_text(r_location) AS location_text,
       custom_fields,
       -- The email typed PRIMARY, else the first one listed.
       coalesce({target}.j_text(jsonb_path_query_first(
                    emails, '$[*] ? (@.type like_regex "^primary$" flag "i").email', '{}', true)),
                {target}.j_text(jsonb_path_query_first(emails, '$[*].email', '{}', true))) AS email,
       -- Stage history and deletion times: Knit's updatedAt, else when Knit started the run, else
       -- when the event landed. All three are stored facts, so re-normalizing gives the same time.
       coalesce(updated_at, %(started_at)s::timestamptz, received_at) AS observed_at,
       CASE WHEN is_delete THEN
           {target}.unusable(r_data, data IS NOT NULL)
           OR {target}.unusable(r_deleted_application_id, deleted_application_id IS NOT NULL)
           OR {target}.unusable(r_deleted_candidate_id, deleted_candidate_id IS NOT NULL)
           OR {target}.unusable(r_deleted_job_id, deleted_job_id IS NOT NULL)
       ELSE
           {target}.unusable(r_data, data IS NOT NULL)
           OR {target}.unusable(r_info, info IS NOT NULL)
           OR {target}.unusable(r_stage, stage IS NOT NULL)
           OR {target}.unusable(r_rejection, rejection IS NOT NULL)
           OR {target}.unusable(r_interviews, interviews IS NOT NULL)
           OR {target}.unusable(r_offers, offers IS NOT NULL)
           OR {target}.unusable(r_attachments, attachments IS NOT NULL)
           OR {target}.unusable(r_custom_fields, custom_fields IS NOT NULL)
           OR {target}.unusable(r_info_id, info_id IS NOT NULL)
           OR {target}.unusable(r_status, status IS NOT NULL)
           OR {target}.unusable(r_origin, origin IS NOT NULL)
           OR {target}.unusable(r_job_id, job_id IS NOT NULL)
           OR {target}.unusable(r_applied_at, applied_at IS NOT NULL)
           OR {target}.unusable(r_updated_at, updated_at IS NOT NULL)
           OR {target}.unusable(r_owner, owner IS NOT NULL)
           OR {target}.unusable(r_owner_id, owner_id IS NOT NULL)
           OR {target}.unusable(r_owner_email, owner_email IS NOT NULL)
           OR {target}.unusable(r_candidate, candidate IS NOT NULL)
           OR {target}.unusable(r_candidate_id, candidate_id IS NOT NULL)
           OR {target}.unusable(r_first_name, first_name IS NOT NULL)
           OR {target}.unusable(r_last_name, last_name IS NOT NULL)
           OR {target}.unusable(r_emails, emails IS NOT NULL)
           OR {target}.unusable(r_phones, phones IS NOT NULL)
           OR {target}.unusable(r_links, links IS NOT NULL)
           OR coalesce({target}.wrong_location(r_location), false)
           OR {target}.unusable(r_stage_id, stage_id IS NOT NULL)
           OR {target}.unusable(r_stage_name, stage_name_text IS NOT NULL)
           OR {target}.unusable(r_stage_text, stage_text IS NOT NULL)
           OR {target}.unusable(r_rejected_at, rejected_at IS NOT NULL)
           -- List elements must be objects with usable fields, and one bad element marks the event.
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(interviews) x(v)
                      WHERE jsonb_typeof(v) <> 'object'
                         OR {target}.wrong_text(v -> 'id')
                         OR {target}.wrong_text(v -> 'subject')
                         OR {target}.wrong_text(v -> 'status')
                         OR {target}.wrong_list(v -> 'interviewers')
                         OR {target}.wrong_text(v -> 'location')
                         OR {target}.unusable({target}.j_stage(v -> 'stage'),
                                              {target}.j_obj({target}.j_stage(v -> 'stage')) IS NOT NULL)
                         OR {target}.wrong_text({target}.j_stage(v -> 'stage') -> 'id')
                         OR {target}.wrong_text({target}.j_stage(v -> 'stage') -> 'name')
                         OR {target}.wrong_text({target}.j_stage(v -> 'stage') -> 'text')
                         OR {target}.unusable(v -> 'createdBy', {target}.j_obj(v -> 'createdBy') IS NOT NULL)
                         OR {target}.unusable(v -> 'creator', {target}.j_obj(v -> 'creator') IS NOT NULL)
                         OR {target}.wrong_text({target}.interview_creator(v) -> 'id')
                         OR {target}.wrong_text({target}.interview_creator(v) -> 'email')
                         OR {target}.unusable(v -> 'scheduledStart', {target}.text_ts(v ->> 'scheduledStart') IS NOT NULL)
                         OR {target}.unusable(v -> 'scheduledEnd', {target}.text_ts(v ->> 'scheduledEnd') IS NOT NULL))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(offers) x(v)
                      WHERE jsonb_typeof(v) <> 'object'
                         OR {target}.wrong_text(v -> 'id')
                         OR {target}.wrong_text(v -> 'status')
                         OR {target}.unusable(v -> 'createdAt', {target}.text_ts(v ->> 'createdAt') IS NOT NULL)
                         OR {target}.unusable(v -> 'sentAt', {target}.text_ts(v ->> 'sentAt') IS NOT NULL)
                         OR {target}.unusable(v -> 'closedAt', {target}.text_ts(v ->> 'closedAt') IS NOT NULL)
                         OR {target}.unusable(v -> 'startDate', {target}.text_ts(v ->> 'startDate') IS NOT NULL))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(attachments) x(v)
                      WHERE jsonb_typeof(v) <> 'object'
                         OR {target}.wrong_text(v -> 'type')
                         OR {target}.wrong_text(v -> 'name')
                         OR {target}.wrong_text(v -> 'link'))
       END AS has_type_errors
FROM (
    SELECT texts.*,
           {target}.text_ts(applied_at_text) AS applied_at,
           {target}.text_ts(updated_at_text) AS updated_at,
           {target}.text_ts(rejected_at_text) AS rejected_at,
           coalesce(stage_name_text, stage_text) AS stage_name,
           coalesce(reason_text, reason_name, reason_obj_text, rejection_text) AS rejection_reason
    FROM (
        SELECT raw.*,
               {target}.j_obj(r_data) AS data,
               {target}.j_obj(r_info) AS info,
               {target}.j_obj(r_stage) AS stage,
               {target}.j_obj(r_rejection) AS rejection,
               {target}.j_arr(r_interviews) AS interviews,
               {target}.j_arr(r_offers) AS offers,
               {target}.j_arr(r_attachments) AS attachments,
               {target}.j_obj(r_custom_fields) AS custom_fields,
               {target}.j_obj(r_owner) AS owner,
               {target}.j_obj(r_candidate) AS candidate,
               {target}.j_arr(r_emails) AS emails,
               {target}.j_arr(r_phones) AS phones,
               {target}.j_arr(r_links) AS links,
               {target}.j_text(r_info_id) AS info_id,
               {target}.j_text(r_deleted_application_id) AS deleted_application_id,
               {target}.j_text(r_deleted_candidate_id) AS deleted_candidate_id,
               {target}.j_text(r_deleted_job_id) AS deleted_job_id,
               {target}.j_text(r_candidate_id) AS candidate_id,
               {target}.j_text(r_first_name) AS first_name,
               {target}.j_text(r_last_name) AS last_name,
               {target}.j_text(r_job_id) AS job_id,
               {target}.j_text(r_status) AS status,
               {target}.j_text(r_origin) AS origin,
               {target}.j_text(r_applied_at) AS applied_at_text,
               {target}.j_text(r_updated_at) AS updated_at_text,
               {target}.j_text(r_stage_id) AS stage_id,
               {target}.j_text(r_stage_name) AS stage_name_text,
               {target}.j_text(r_stage_text) AS stage_text,
               {target}.j_text(r_reason) AS reason_text,
               {target}.j_text(r_reason -> 'name') AS reason_name,
               {target}.j_text(r_reason -> 'text') AS reason_obj_text,
               {target}.j_text(r_rejection_text) AS rejection_text,
               {target}.j_text(r_rejected_at) AS rejected_at_text,
               {target}.j_text(r_owner_id) AS owner_id,
               {target}.j_text(r_owner_email) AS owner_email
        FROM (
            SELECT people.*,
                   r_candidate -> 'id' AS r_candidate_id,
                   r_candidate -> 'firstName' AS r_first_name,
                   r_candidate -> 'lastName' AS r_last_name,
                   r_candidate -> 'emails' AS r_emails,
                   r_candidate -> 'phones' AS r_phones,
                   r_candidate -> 'links' AS r_links,
                   r_candidate -> 'location' AS r_location,
                   r_owner -> 'id' AS r_owner_id,
                   r_owner -> 'email' AS r_owner_email,
                   r_stage -> 'id' AS r_stage_id,
                   r_stage -> 'name' AS r_stage_name,
                   r_stage -> 'text' AS r_stage_text
            FROM (
                SELECT models.*,
                       {target}.j_stage(r_stage_model) AS r_stage,
                       r_info -> 'id' AS r_info_id,
                       r_info -> 'status' AS r_status,
                       r_info -> 'origin' AS r_origin,
                       r_info -> 'jobId' AS r_job_id,
                       r_info -> 'appliedAt' AS r_applied_at,
                       r_info -> 'updatedAt' AS r_updated_at,
                       r_info -> 'owner' AS r_owner,
                       r_info -> 'candidate' AS r_candidate,
                       r_rejection -> 'reason' AS r_reason,
                       r_rejection -> 'text' AS r_rejection_text,
                       r_rejection -> 'rejectedAt' AS r_rejected_at
                FROM (
                    SELECT envelope.*,
                           r_data -> 'info' AS r_info,
                           r_data -> 'currentStage' AS r_stage_model,
                           r_data -> 'customFields' AS r_custom_fields,
                           r_data -> 'rejection' AS r_rejection,
                           r_data -> 'interviews' AS r_interviews,
                           r_data -> 'offers' AS r_offers,
                           r_data -> 'attachments' AS r_attachments,
                           r_data -> 'applicationId' AS r_deleted_application_id,
                           r_data -> 'candidateId' AS r_deleted_candidate_id,
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
            ) people
            OFFSET 0
        ) raw
        OFFSET 0
    ) texts
    OFFSET 0
) parsed;

-- An event id is remembered for the dedup window only (landing 0003): a redelivery after it lands again
-- with a higher seq. Only its first copy counts, or the late copy would outrank the run's later events.
-- Only a run spanning more than the window can hold one, so the statement does nothing for the others.
DELETE FROM _run_events r
USING _run_events d
WHERE %(may_hold_late_duplicates)s AND d.event_id = r.event_id AND d.seq < r.seq;

-- Per application: the run's highest event of any type, and its highest new/modified.
CREATE TEMP TABLE _run_apps ON COMMIT DROP AS
SELECT integration_id,
       application_id,
       max(seq) AS top_seq,
       max(seq) FILTER (WHERE NOT is_delete) AS data_seq
FROM _run_events
WHERE application_id IS NOT NULL
GROUP BY integration_id, application_id;

-- Point lookups by seq keep a nested loop safe when the planner underestimates a join.
CREATE UNIQUE INDEX ON _run_events (seq);
-- Statistics only for the columns that are joined on: the rest is wide and never filtered.
ANALYZE _run_events (seq, integration_id, application_id, is_delete);
ANALYZE _run_apps;
