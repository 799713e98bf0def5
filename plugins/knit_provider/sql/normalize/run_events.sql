-- Step 1 of normalizing one run: read every record event of the run once (through the landing
-- index on (sync_run_id, seq)) and keep its typed fields in a temporary table, so the later
-- statements never parse a payload again except to copy the raw models and the child lists.
-- Parameters: run_id, integration_id (the run's), started_at (Knit's start of the run).
CREATE TEMP TABLE _run_events ON COMMIT DROP AS
SELECT e.seq,
       e.event_id,
       e.event_type,
       e.event_type = 'record.deleted' AS is_delete,
       coalesce(e.integration_id, %(integration_id)s, '') AS integration_id,
       coalesce(e.record_id,
                {target}.j_text(e.payload #> '{eventData,info,id}'),
                {target}.j_text(e.payload #> '{eventData,applicationId}')) AS application_id,
       CASE WHEN e.event_type = 'record.deleted'
            THEN {target}.j_text(e.payload #> '{eventData,candidateId}')
            ELSE {target}.j_text(e.payload #> '{eventData,info,candidate,id}') END AS candidate_id,
       coalesce(jsonb_typeof(e.payload #> '{eventData,info,candidate}') = 'object', false) AS has_candidate,
       CASE WHEN e.event_type = 'record.deleted'
            THEN {target}.j_text(e.payload #> '{eventData,jobId}')
            ELSE {target}.j_text(e.payload #> '{eventData,info,jobId}') END AS job_id,
       {target}.j_text(e.payload #> '{eventData,info,status}') AS status,
       {target}.j_text(e.payload #> '{eventData,info,origin}') AS origin,
       {target}.j_ts(e.payload #> '{eventData,info,appliedAt}') AS applied_at,
       {target}.j_ts(e.payload #> '{eventData,info,updatedAt}') AS updated_at,
       {target}.j_text(e.payload #> '{eventData,currentStage,id}') AS stage_id,
       coalesce({target}.j_text(e.payload #> '{eventData,currentStage,name}'),
                {target}.j_text(e.payload #> '{eventData,currentStage,text}')) AS stage_name,
       coalesce({target}.j_text(e.payload #> '{eventData,rejection,reason}'),
                {target}.j_text(e.payload #> '{eventData,rejection,reason,name}'),
                {target}.j_text(e.payload #> '{eventData,rejection,reason,text}'),
                {target}.j_text(e.payload #> '{eventData,rejection,text}')) AS rejection_reason,
       {target}.j_ts(e.payload #> '{eventData,rejection,rejectedAt}') AS rejected_at,
       {target}.j_text(e.payload #> '{eventData,info,owner,id}') AS owner_id,
       {target}.j_text(e.payload #> '{eventData,info,owner,email}') AS owner_email,
       -- Stage history and deletion times: Knit's updatedAt, else when Knit started the run, else
       -- when the event landed. All three are stored facts, so re-normalizing gives the same time.
       coalesce({target}.j_ts(e.payload #> '{eventData,info,updatedAt}'), %(started_at)s::timestamptz,
                e.received_at) AS observed_at,
       CASE WHEN e.event_type = 'record.deleted' THEN
           {target}.j_obj_bad(e.payload -> 'eventData')
           OR {target}.j_text_bad(e.payload #> '{eventData,applicationId}')
           OR {target}.j_text_bad(e.payload #> '{eventData,candidateId}')
           OR {target}.j_text_bad(e.payload #> '{eventData,jobId}')
       ELSE
           {target}.j_obj_bad(e.payload -> 'eventData')
           OR {target}.j_obj_bad(e.payload #> '{eventData,info}')
           OR {target}.j_obj_bad(e.payload #> '{eventData,currentStage}')
           OR {target}.j_obj_bad(e.payload #> '{eventData,rejection}')
           OR {target}.j_arr_bad(e.payload #> '{eventData,interviews}')
           OR {target}.j_arr_bad(e.payload #> '{eventData,offers}')
           OR {target}.j_arr_bad(e.payload #> '{eventData,attachments}')
           OR {target}.j_text_bad(e.payload #> '{eventData,info,id}')
           OR {target}.j_text_bad(e.payload #> '{eventData,info,status}')
           OR {target}.j_text_bad(e.payload #> '{eventData,info,origin}')
           OR {target}.j_text_bad(e.payload #> '{eventData,info,jobId}')
           OR {target}.j_ts_bad(e.payload #> '{eventData,info,appliedAt}')
           OR {target}.j_ts_bad(e.payload #> '{eventData,info,updatedAt}')
           OR {target}.j_obj_bad(e.payload #> '{eventData,info,owner}')
           OR {target}.j_text_bad(e.payload #> '{eventData,info,owner,id}')
           OR {target}.j_text_bad(e.payload #> '{eventData,info,owner,email}')
           OR {target}.j_obj_bad(e.payload #> '{eventData,info,candidate}')
           OR {target}.j_text_bad(e.payload #> '{eventData,info,candidate,id}')
           OR {target}.j_text_bad(e.payload #> '{eventData,info,candidate,firstName}')
           OR {target}.j_text_bad(e.payload #> '{eventData,info,candidate,lastName}')
           OR {target}.j_arr_bad(e.payload #> '{eventData,info,candidate,emails}')
           OR {target}.j_arr_bad(e.payload #> '{eventData,info,candidate,phones}')
           OR {target}.j_arr_bad(e.payload #> '{eventData,info,candidate,links}')
           OR {target}.j_text_bad(e.payload #> '{eventData,currentStage,id}')
           OR {target}.j_text_bad(e.payload #> '{eventData,currentStage,name}')
           OR {target}.j_text_bad(e.payload #> '{eventData,currentStage,text}')
           OR {target}.j_ts_bad(e.payload #> '{eventData,rejection,rejectedAt}')
           -- List elements must be objects with usable fields; one bad element marks the event.
           OR coalesce(jsonb_path_exists(e.payload, '$.eventData.interviews[*] ? (@.type() != "object")'), false)
           OR coalesce(jsonb_path_exists(e.payload, '$.eventData.offers[*] ? (@.type() != "object")'), false)
           OR coalesce(jsonb_path_exists(e.payload, '$.eventData.attachments[*] ? (@.type() != "object")'), false)
           OR EXISTS (SELECT 1 FROM jsonb_array_elements({target}.j_arr(e.payload #> '{eventData,interviews}')) i
                      WHERE {target}.j_ts_bad(i -> 'scheduledStart') OR {target}.j_ts_bad(i -> 'scheduledEnd')
                         OR {target}.j_arr_bad(i -> 'interviewers') OR {target}.j_text_bad(i -> 'id')
                         OR {target}.j_text_bad(i -> 'subject') OR {target}.j_text_bad(i -> 'status'))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements({target}.j_arr(e.payload #> '{eventData,offers}')) o
                      WHERE {target}.j_ts_bad(o -> 'createdAt') OR {target}.j_ts_bad(o -> 'sentAt')
                         OR {target}.j_ts_bad(o -> 'closedAt') OR {target}.j_ts_bad(o -> 'startDate')
                         OR {target}.j_text_bad(o -> 'id') OR {target}.j_text_bad(o -> 'status'))
           OR EXISTS (SELECT 1 FROM jsonb_array_elements({target}.j_arr(e.payload #> '{eventData,attachments}')) a
                      WHERE {target}.j_text_bad(a -> 'type') OR {target}.j_text_bad(a -> 'name')
                         OR {target}.j_text_bad(a -> 'link'))
       END AS has_type_errors
FROM {landing}.events e
WHERE e.sync_run_id = %(run_id)s
  AND e.event_type IN ('record.new', 'record.modified', 'record.deleted');

-- Per application: the run's highest event of any type, and its highest new/modified.
CREATE TEMP TABLE _run_apps ON COMMIT DROP AS
SELECT integration_id,
       application_id,
       max(seq) AS top_seq,
       max(seq) FILTER (WHERE NOT is_delete) AS data_seq
FROM _run_events
WHERE application_id IS NOT NULL
GROUP BY integration_id, application_id;

CREATE UNIQUE INDEX ON _run_events (seq);
ANALYZE _run_events;
ANALYZE _run_apps;
