-- Step 3: replace the child lists of the jobs whose data version this run just set, from the event
-- that set it (looked up by (sync_run_id, seq) in the partitions of the run's span). Positions are
-- 1-based places in Knit's list; elements that are not objects are skipped (step 1 counted the
-- event), and every element is kept whole in raw. Ids read '' as absent. A stage's name is its
-- name, else its text (as an application's stage); an office's location is read as a candidate's
-- (a string as sent, an object as "city, state, country").
-- Parameters: run_id, first_received_at, last_received_at.
CREATE TEMP TABLE _job_lists ON COMMIT DROP AS
SELECT w.integration_id, w.job_id, ev.payload -> 'eventData' AS data
FROM _changed w
JOIN _run_jobs j ON j.integration_id = w.integration_id AND j.job_id = w.job_id
JOIN {landing}.events ev ON ev.sync_run_id = %(run_id)s AND ev.seq = j.data_seq
    AND ev.received_at BETWEEN %(first_received_at)s AND %(last_received_at)s
WHERE w.data_won;

DELETE FROM {target}.ats_job_departments c
USING _changed w
WHERE w.data_won AND c.integration_id = w.integration_id AND c.job_id = w.job_id;

DELETE FROM {target}.ats_job_offices c
USING _changed w
WHERE w.data_won AND c.integration_id = w.integration_id AND c.job_id = w.job_id;

DELETE FROM {target}.ats_job_hiring_managers c
USING _changed w
WHERE w.data_won AND c.integration_id = w.integration_id AND c.job_id = w.job_id;

DELETE FROM {target}.ats_job_recruiters c
USING _changed w
WHERE w.data_won AND c.integration_id = w.integration_id AND c.job_id = w.job_id;

DELETE FROM {target}.ats_job_stages c
USING _changed w
WHERE w.data_won AND c.integration_id = w.integration_id AND c.job_id = w.job_id;

INSERT INTO {target}.ats_job_departments (integration_id, job_id, position, department_id, name, raw)
SELECT l.integration_id, l.job_id, x.position, {target}.j_id(x.v -> 'id'), {target}.j_text(x.v -> 'name'), x.v
FROM _job_lists l
CROSS JOIN LATERAL jsonb_array_elements({target}.j_arr(l.data -> 'departments')) WITH ORDINALITY AS x(v, position)
WHERE jsonb_typeof(x.v) = 'object';

INSERT INTO {target}.ats_job_offices (integration_id, job_id, position, office_id, name, location, raw)
SELECT l.integration_id, l.job_id, x.position, {target}.j_id(x.v -> 'id'), {target}.j_text(x.v -> 'name'),
       {target}.location_text(x.v -> 'location'), x.v
FROM _job_lists l
CROSS JOIN LATERAL jsonb_array_elements({target}.j_arr(l.data -> 'offices')) WITH ORDINALITY AS x(v, position)
WHERE jsonb_typeof(x.v) = 'object';

INSERT INTO {target}.ats_job_hiring_managers (integration_id, job_id, position, user_id, email, employee_id, raw)
SELECT l.integration_id, l.job_id, x.position, {target}.j_id(x.v -> 'id'), {target}.j_text(x.v -> 'email'),
       {target}.j_id(x.v -> 'employeeId'), x.v
FROM _job_lists l
CROSS JOIN LATERAL jsonb_array_elements({target}.j_arr(l.data -> 'hiringManagers')) WITH ORDINALITY AS x(v, position)
WHERE jsonb_typeof(x.v) = 'object';

INSERT INTO {target}.ats_job_recruiters (integration_id, job_id, position, user_id, email, employee_id, raw)
SELECT l.integration_id, l.job_id, x.position, {target}.j_id(x.v -> 'id'), {target}.j_text(x.v -> 'email'),
       {target}.j_id(x.v -> 'employeeId'), x.v
FROM _job_lists l
CROSS JOIN LATERAL jsonb_array_elements({target}.j_arr(l.data -> 'recruiters')) WITH ORDINALITY AS x(v, position)
WHERE jsonb_typeof(x.v) = 'object';

INSERT INTO {target}.ats_job_stages (integration_id, job_id, position, stage_id, name, raw)
SELECT l.integration_id, l.job_id, x.position, {target}.j_id(x.v -> 'id'), {target}.stage_name(x.v), x.v
FROM _job_lists l
CROSS JOIN LATERAL jsonb_array_elements({target}.j_arr(l.data -> 'stages')) WITH ORDINALITY AS x(v, position)
WHERE jsonb_typeof(x.v) = 'object';
