-- The tables of Knit's ats_jobs data type, and the view joining applications to their jobs.
-- Idempotent, like the shared schema (sql/normalize/schema.sql, applied first): every statement must
-- be safe to run again on an existing schema. Applied after ats_applications' schema.sql (the
-- registry's order), so the view can read ats_applications.
--
-- Versions: an event's version is (its run's first_seq, its own seq), compared as for applications.


-- One row per job. Two versions are kept:
--   version_*  the highest event of any type: it decides is_deleted / deleted_at;
--   data_*     the highest record.new/record.modified: the columns, models and child lists.
-- A closed job arrives as record.deleted, so it stays with its last known data, and a later
-- new/modified (reopened) revives it. snapshot_*: which initial_sync snapshot deleted it (shared step).
CREATE TABLE IF NOT EXISTS {target}.ats_jobs (
    integration_id      text        NOT NULL,
    job_id              text        NOT NULL,
    title               text,
    description         text,
    status              text,
    is_confidential     boolean,
    job_codes           jsonb,
    info_url            text,
    apply_url           text,
    created_at          timestamptz,
    updated_at          timestamptz,
    closed_at           timestamptz,
    is_deleted          boolean     NOT NULL DEFAULT false,
    deleted_at          timestamptz,
    -- eventData as Knit sent it: info, departments, offices, ..., and the models kept raw only.
    models              jsonb,
    version_run_id      text        NOT NULL,
    version_first_seq   bigint      NOT NULL,
    version_seq         bigint      NOT NULL,
    version_event_id    text        NOT NULL,
    data_run_id         text,
    data_first_seq      bigint,
    data_seq            bigint,
    data_event_id       text,
    snapshot_run_id     text,
    snapshot_first_seq  bigint,
    PRIMARY KEY (integration_id, job_id)
);
-- Only snapshot-deleted rows: re-attributing or withdrawing a snapshot's deletions reads few rows.
CREATE INDEX IF NOT EXISTS ats_jobs_snapshot_idx
    ON {target}.ats_jobs (integration_id, snapshot_first_seq) WHERE snapshot_run_id IS NOT NULL;
COMMENT ON COLUMN {target}.ats_jobs.status IS
    'As sent; Knit documents OPEN, CLOSED, DRAFT, NOT_SPECIFIED.';
COMMENT ON COLUMN {target}.ats_jobs.job_codes IS
    'info.jobCodes exactly as Knit sent it (its type is not documented).';
COMMENT ON COLUMN {target}.ats_jobs.is_deleted IS
    'Knit sent record.deleted (the job was closed, or removed from the source ATS), or an initial_sync snapshot did not contain it (snapshot_run_id).';

-- Child lists, keyed by their position in Knit's list (ids may be missing or repeated); raw is the
-- element as sent.
CREATE TABLE IF NOT EXISTS {target}.ats_job_departments (
    integration_id  text    NOT NULL,
    job_id          text    NOT NULL,
    position        integer NOT NULL,
    department_id   text,
    name            text,
    raw             jsonb   NOT NULL,
    PRIMARY KEY (integration_id, job_id, position)
);

CREATE TABLE IF NOT EXISTS {target}.ats_job_offices (
    integration_id  text    NOT NULL,
    job_id          text    NOT NULL,
    position        integer NOT NULL,
    office_id       text,
    name            text,
    location        text,
    raw             jsonb   NOT NULL,
    PRIMARY KEY (integration_id, job_id, position)
);
COMMENT ON COLUMN {target}.ats_job_offices.location IS
    'The office''s location as text: a string as sent; an object as its city, state and country joined by ", ".';

CREATE TABLE IF NOT EXISTS {target}.ats_job_hiring_managers (
    integration_id  text    NOT NULL,
    job_id          text    NOT NULL,
    position        integer NOT NULL,
    user_id         text,
    email           text,
    employee_id     text,
    raw             jsonb   NOT NULL,
    PRIMARY KEY (integration_id, job_id, position)
);

CREATE TABLE IF NOT EXISTS {target}.ats_job_recruiters (
    integration_id  text    NOT NULL,
    job_id          text    NOT NULL,
    position        integer NOT NULL,
    user_id         text,
    email           text,
    employee_id     text,
    raw             jsonb   NOT NULL,
    PRIMARY KEY (integration_id, job_id, position)
);

CREATE TABLE IF NOT EXISTS {target}.ats_job_stages (
    integration_id  text    NOT NULL,
    job_id          text    NOT NULL,
    position        integer NOT NULL,
    stage_id        text,
    name            text,
    raw             jsonb   NOT NULL,
    PRIMARY KEY (integration_id, job_id, position)
);

-- Applications with their job: Knit's application carries only a jobId. A LEFT JOIN, so an
-- application whose job is not synced (yet) still shows, with NULL job columns; a closed job
-- (job_is_deleted) keeps its last title. The job's columns come first and the application's last
-- (a.*): a column added to ats_applications then only adds a column at the end, which
-- CREATE OR REPLACE VIEW allows. A change that drops, renames or retypes one of its columns must
-- DROP VIEW IF EXISTS this view first (in ats_applications' schema.sql): it is created again here.
CREATE OR REPLACE VIEW {target}.ats_applications_with_jobs AS
SELECT j.title AS job_title,
       j.status AS job_status,
       j.is_deleted AS job_is_deleted,
       d.names[1] AS job_department,
       d.names AS job_department_names,
       o.names[1] AS job_office,
       o.locations[1] AS job_office_location,
       o.names AS job_office_names,
       a.*
FROM {target}.ats_applications a
LEFT JOIN {target}.ats_jobs j ON j.integration_id = a.integration_id AND j.job_id = a.job_id
LEFT JOIN LATERAL (
    SELECT array_agg(c.name ORDER BY c.position) AS names
    FROM {target}.ats_job_departments c
    WHERE c.integration_id = a.integration_id AND c.job_id = a.job_id
) d ON true
LEFT JOIN LATERAL (
    SELECT array_agg(c.name ORDER BY c.position) AS names,
           array_agg(c.location ORDER BY c.position) AS locations
    FROM {target}.ats_job_offices c
    WHERE c.integration_id = a.integration_id AND c.job_id = a.job_id
) o ON true;
COMMENT ON VIEW {target}.ats_applications_with_jobs IS
    'Every application with its job''s title, status, first department and office (and all their names, in Knit''s order); NULL job columns when the job is not synced.';
