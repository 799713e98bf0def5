-- Step 3: replace the child lists of the applications whose data version this run just set.
-- Positions are 1-based places in Knit's list; elements that are not objects are skipped (and the
-- event was counted in step 1). Every element is also kept whole in raw: Knit documents few of its
-- fields (an interview's status, stage, creator and location), so the other typed columns are our
-- reading. An interview's stage is read like the application's (schema.sql j_stage); its creator is
-- createdBy, else creator. Ids read '' as absent. The payloads are the run's own events:
-- looked up by (sync_run_id, seq) in the partitions of the run's span, never across the history.
DELETE FROM {target}.ats_application_interviews c
USING _changed w
WHERE w.data_won AND c.integration_id = w.integration_id AND c.application_id = w.application_id;

DELETE FROM {target}.ats_application_offers c
USING _changed w
WHERE w.data_won AND c.integration_id = w.integration_id AND c.application_id = w.application_id;

DELETE FROM {target}.ats_application_attachments c
USING _changed w
WHERE w.data_won AND c.integration_id = w.integration_id AND c.application_id = w.application_id;

INSERT INTO {target}.ats_application_interviews (
    integration_id, application_id, position, interview_id, subject, scheduled_start, scheduled_end,
    status, interviewers, raw, stage_id, stage_name, creator_id, creator_email, location)
SELECT w.integration_id, w.application_id, x.position,
       {target}.j_id(x.v -> 'id'),
       {target}.j_text(x.v -> 'subject'),
       {target}.j_ts(x.v -> 'scheduledStart'),
       {target}.j_ts(x.v -> 'scheduledEnd'),
       {target}.j_text(x.v -> 'status'),
       {target}.j_arr(x.v -> 'interviewers'),
       x.v,
       {target}.j_id({target}.j_stage(x.v -> 'stage') -> 'id'),
       {target}.stage_name({target}.j_stage(x.v -> 'stage')),
       {target}.j_id({target}.interview_creator(x.v) -> 'id'),
       {target}.j_text({target}.interview_creator(x.v) -> 'email'),
       {target}.j_text(x.v -> 'location')
FROM _changed w
JOIN _run_apps a ON a.integration_id = w.integration_id AND a.application_id = w.application_id
JOIN {landing}.events ev ON ev.sync_run_id = %(run_id)s AND ev.seq = a.data_seq
    AND ev.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
CROSS JOIN LATERAL jsonb_array_elements({target}.j_arr(ev.payload #> '{eventData,interviews}'))
    WITH ORDINALITY AS x(v, position)
WHERE w.data_won AND jsonb_typeof(x.v) = 'object';

INSERT INTO {target}.ats_application_offers (
    integration_id, application_id, position, offer_id, status, created_at, sent_at, closed_at,
    start_date, raw)
SELECT w.integration_id, w.application_id, x.position,
       {target}.j_id(x.v -> 'id'),
       {target}.j_text(x.v -> 'status'),
       {target}.j_ts(x.v -> 'createdAt'),
       {target}.j_ts(x.v -> 'sentAt'),
       {target}.j_ts(x.v -> 'closedAt'),
       {target}.j_ts(x.v -> 'startDate'),
       x.v
FROM _changed w
JOIN _run_apps a ON a.integration_id = w.integration_id AND a.application_id = w.application_id
JOIN {landing}.events ev ON ev.sync_run_id = %(run_id)s AND ev.seq = a.data_seq
    AND ev.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
CROSS JOIN LATERAL jsonb_array_elements({target}.j_arr(ev.payload #> '{eventData,offers}'))
    WITH ORDINALITY AS x(v, position)
WHERE w.data_won AND jsonb_typeof(x.v) = 'object';

INSERT INTO {target}.ats_application_attachments (
    integration_id, application_id, position, type, name, expiring_link, raw)
SELECT w.integration_id, w.application_id, x.position,
       {target}.j_text(x.v -> 'type'),
       {target}.j_text(x.v -> 'name'),
       {target}.j_text(x.v -> 'link'),
       x.v
FROM _changed w
JOIN _run_apps a ON a.integration_id = w.integration_id AND a.application_id = w.application_id
JOIN {landing}.events ev ON ev.sync_run_id = %(run_id)s AND ev.seq = a.data_seq
    AND ev.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
CROSS JOIN LATERAL jsonb_array_elements({target}.j_arr(ev.payload #> '{eventData,attachments}'))
    WITH ORDINALITY AS x(v, position)
WHERE w.data_won AND jsonb_typeof(x.v) = 'object';
