-- Normalized ATS application tables. Idempotent: applied under an advisory lock before every
-- normalization, so every statement must be safe to run again on an existing schema.
--
-- Versions: an event's version is (its run's first_seq, its own seq). Every table that is fed by
-- "the highest version wins" keeps the version it came from, so a lower one can never overwrite it.

CREATE SCHEMA IF NOT EXISTS {target};

-- ---------------------------------------------------------------------------------------------
-- Tolerant accessors. Knit's payloads may carry nulls, missing keys or values of the wrong JSON
-- type; none of that may fail a run. Each accessor returns NULL for a value it cannot use, and its
-- *_bad twin says whether the value was present but unusable (counted and reported per run).
-- All are single-expression SQL functions so the planner inlines them.
-- ---------------------------------------------------------------------------------------------

-- A JSON string or number as text (ids are sometimes numbers); anything else is NULL.
CREATE OR REPLACE FUNCTION {target}.j_text(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) IN ('string', 'number') THEN v #>> '{}' END
$$;

CREATE OR REPLACE FUNCTION {target}.j_text_bad(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_typeof(v) NOT IN ('string', 'number', 'null'), false)
$$;

CREATE OR REPLACE FUNCTION {target}.j_obj(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'object' THEN v END
$$;

CREATE OR REPLACE FUNCTION {target}.j_obj_bad(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_typeof(v) NOT IN ('object', 'null'), false)
$$;

CREATE OR REPLACE FUNCTION {target}.j_arr(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'array' THEN v END
$$;

CREATE OR REPLACE FUNCTION {target}.j_arr_bad(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_typeof(v) NOT IN ('array', 'null'), false)
$$;

-- ISO-8601 text ("2024-03-01", "2024-03-01T10:15:00Z", "... +05:30") or epoch milliseconds (a
-- number or a string of digits, as Knit writes its own times). The pattern admits only values the
-- cast accepts, except impossible days (Feb 30), which the month-end comparison rules out, so the
-- cast can never raise. Times without a zone are UTC: normalization sets TimeZone to UTC.
CREATE OR REPLACE FUNCTION {target}.text_ts(t text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN t ~ '^\s*[0-9]{1,15}(\.[0-9]*)?\s*$' THEN to_timestamp(t::numeric / 1000)
        WHEN t ~ '^\s*(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([T ]([01][0-9]|2[0-3]):[0-5][0-9](:([0-5][0-9])(\.[0-9]{1,9})?)?)?\s*(Z|z|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)?\s*$'
             AND (substr(ltrim(t), 9, 2)::int <= 28
                  OR substr(ltrim(t), 9, 2)::int <= extract(day FROM make_date(substr(ltrim(t), 1, 4)::int,
                         substr(ltrim(t), 6, 2)::int, 1) + interval '1 month - 1 day'))
        THEN t::timestamptz
    END
$$;

CREATE OR REPLACE FUNCTION {target}.j_ts(v jsonb) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT {target}.text_ts({target}.j_text(v))
$$;

CREATE OR REPLACE FUNCTION {target}.j_ts_bad(v jsonb) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_typeof(v) <> 'null', false) AND {target}.j_ts(v) IS NULL
$$;

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------

-- One row per application. Two versions are kept:
--   version_*  the highest event of any type: it decides is_deleted / deleted_at;
--   data_*     the highest record.new/record.modified: the columns, models and child lists.
-- A soft-deleted application therefore keeps its last known data, and a later new/modified
-- revives it. Each version only ever moves up, so the row is the same whatever the run order.
CREATE TABLE IF NOT EXISTS {target}.ats_applications (
    integration_id      text        NOT NULL,
    application_id      text        NOT NULL,
    candidate_id        text,
    job_id              text,
    status              text,
    origin              text,
    applied_at          timestamptz,
    updated_at          timestamptz,
    current_stage_id    text,
    current_stage_name  text,
    rejection_reason    text,
    rejected_at         timestamptz,
    owner_id            text,
    owner_email         text,
    is_deleted          boolean     NOT NULL DEFAULT false,
    deleted_at          timestamptz,
    -- eventData as Knit sent it: info, currentStage, interviews, rejection, offers, attachments.
    models              jsonb,
    version_run_id      text        NOT NULL,
    version_first_seq   bigint      NOT NULL,
    version_seq         bigint      NOT NULL,
    version_event_id    text        NOT NULL,
    data_run_id         text,
    data_first_seq      bigint,
    data_seq            bigint,
    data_event_id       text,
    PRIMARY KEY (integration_id, application_id)
);
CREATE INDEX IF NOT EXISTS ats_applications_candidate_idx ON {target}.ats_applications (integration_id, candidate_id);

-- Child lists, keyed by their position in Knit's list (ids may be missing or repeated).
CREATE TABLE IF NOT EXISTS {target}.ats_application_interviews (
    integration_id   text    NOT NULL,
    application_id   text    NOT NULL,
    position         integer NOT NULL,
    interview_id     text,
    subject          text,
    scheduled_start  timestamptz,
    scheduled_end    timestamptz,
    status           text,
    interviewers     jsonb,
    raw              jsonb   NOT NULL,
    PRIMARY KEY (integration_id, application_id, position)
);

CREATE TABLE IF NOT EXISTS {target}.ats_application_offers (
    integration_id  text    NOT NULL,
    application_id  text    NOT NULL,
    position        integer NOT NULL,
    offer_id        text,
    status          text,
    created_at      timestamptz,
    sent_at         timestamptz,
    closed_at       timestamptz,
    start_date      timestamptz,
    raw             jsonb   NOT NULL,
    PRIMARY KEY (integration_id, application_id, position)
);

CREATE TABLE IF NOT EXISTS {target}.ats_application_attachments (
    integration_id  text    NOT NULL,
    application_id  text    NOT NULL,
    position        integer NOT NULL,
    type            text,
    name            text,
    link            text,
    PRIMARY KEY (integration_id, application_id, position)
);

-- One row per candidate, from the highest-version application event that carries it.
CREATE TABLE IF NOT EXISTS {target}.ats_candidates (
    integration_id     text   NOT NULL,
    candidate_id       text   NOT NULL,
    first_name         text,
    last_name          text,
    email              text,
    emails             jsonb,
    phones             jsonb,
    links              jsonb,
    location           jsonb,
    application_id     text   NOT NULL,
    version_run_id     text   NOT NULL,
    version_first_seq  bigint NOT NULL,
    version_seq        bigint NOT NULL,
    version_event_id   text   NOT NULL,
    PRIMARY KEY (integration_id, candidate_id)
);

-- Every record event of every normalized run, narrowed to what the stage history needs. The
-- history is rebuilt from here, so it covers exactly the normalized runs whatever their order.
CREATE TABLE IF NOT EXISTS {target}.ats_application_versions (
    integration_id  text        NOT NULL,
    application_id  text        NOT NULL,
    first_seq       bigint      NOT NULL,
    seq             bigint      NOT NULL,
    sync_run_id     text        NOT NULL,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    stage_id        text,
    stage_name      text,
    observed_at     timestamptz NOT NULL,
    PRIMARY KEY (integration_id, application_id, first_seq, seq)
);

-- The stages each application was seen in, in version order, consecutive repeats collapsed.
CREATE TABLE IF NOT EXISTS {target}.ats_application_stage_history (
    integration_id  text        NOT NULL,
    application_id  text        NOT NULL,
    position        integer     NOT NULL,
    stage_id        text,
    stage_name      text,
    entered_at      timestamptz NOT NULL,
    left_at         timestamptz,
    first_seq       bigint      NOT NULL,
    seq             bigint      NOT NULL,
    PRIMARY KEY (integration_id, application_id, position)
);

-- Bookkeeping: which runs were normalized into this schema, when, and what it did.
CREATE TABLE IF NOT EXISTS {target}.normalized_runs (
    sync_run_id           text        PRIMARY KEY,
    integration_id        text,
    first_seq             bigint      NOT NULL,
    complete              boolean     NOT NULL,
    record_events         bigint      NOT NULL,
    applications          bigint      NOT NULL,
    applications_changed  bigint      NOT NULL,
    candidates_changed    bigint      NOT NULL,
    type_error_events     bigint      NOT NULL,
    normalized_at         timestamptz NOT NULL,
    times_normalized      integer     NOT NULL DEFAULT 1
);
