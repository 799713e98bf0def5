-- Normalized ATS application tables. Idempotent: applied under an advisory lock before every
-- normalization, so every statement must be safe to run again on an existing schema.
--
-- Versions: an event's version is (its run's first_seq, its own seq). Every table that is fed by
-- "the highest version wins" keeps the version it came from, so a lower one can never overwrite it.

CREATE SCHEMA IF NOT EXISTS {target};

-- ---------------------------------------------------------------------------------------------
-- Tolerant accessors. Knit's payloads may carry nulls, missing keys or values of the wrong JSON
-- type; none of that may fail a run. Each accessor returns NULL for a value it cannot use, and its
-- unusable() says whether a value was present but could not be used (counted and reported per run).
-- All are single-expression SQL functions so the planner inlines them; callers hand them
-- values extracted once (inlining repeats the argument expression at each use).
-- ---------------------------------------------------------------------------------------------

-- A JSON string or number as text (ids are sometimes numbers); anything else is NULL.
CREATE OR REPLACE FUNCTION {target}.j_text(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) IN ('string', 'number') THEN v #>> '{}' END
$$;

-- An id: as j_text, but '' is absent (Knit's record.deleted sample sends "" for every id). An empty
-- id is not a type error, so callers test usability against j_text and store j_id.
CREATE OR REPLACE FUNCTION {target}.j_id(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT nullif({target}.j_text(v), '')
$$;

CREATE OR REPLACE FUNCTION {target}.j_obj(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'object' THEN v END
$$;

CREATE OR REPLACE FUNCTION {target}.j_arr(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'array' THEN v END
$$;

-- ISO-8601 text ("2024-03-01", "2024-03-01T10:15:00Z", "... +05:30") or epoch milliseconds (a
-- number or a string of at least 12 digits, as Knit writes its own times). Only text starting with
-- a digit is parsed, so words Postgres would accept ('now', 'today', 'epoch') never turn into a
-- time. PostgreSQL 16 checks the input without raising (pg_input_is_valid); older servers get a
-- pattern that admits only what the cast accepts (impossible days like Feb 30 ruled out apart).
-- Times without a zone are UTC: normalization sets TimeZone to UTC and a fixed DateStyle.
DO $do$
BEGIN
    IF current_setting('server_version_num')::int >= 160000 THEN
        CREATE OR REPLACE FUNCTION {target}.text_ts(t text) RETURNS timestamptz
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT CASE
                WHEN NOT ascii(t) BETWEEN 48 AND 57 THEN NULL  -- a digit first
                WHEN pg_input_is_valid(t, 'numeric') AND length(t) >= 12
                THEN CASE WHEN t::numeric < 1e15 THEN to_timestamp(t::numeric / 1000) END
                WHEN pg_input_is_valid(t, 'timestamptz') THEN t::timestamptz
            END
        $$;
    ELSE
        CREATE OR REPLACE FUNCTION {target}.text_ts(t text) RETURNS timestamptz
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT CASE
                WHEN t ~ '^[0-9]{12,15}(\.[0-9]*)?$' THEN to_timestamp(t::numeric / 1000)
                WHEN t ~ '^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([T ]([01][0-9]|2[0-3]):[0-5][0-9](:([0-5][0-9])(\.[0-9]{1,9})?)?)?\s*(Z|z|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)?$'
                     AND (substr(t, 9, 2)::int <= 28
                          OR substr(t, 9, 2)::int <= extract(day FROM make_date(substr(t, 1, 4)::int,
                                 substr(t, 6, 2)::int, 1) + interval '1 month - 1 day'))
                THEN t::timestamptz
            END
        $$;
    END IF;
END
$do$;

-- Any JSON value's time: objects, lists and booleans read as text never start with a digit.
CREATE OR REPLACE FUNCTION {target}.j_ts(v jsonb) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT {target}.text_ts(v #>> '{}')
$$;

-- True when a value was sent (not missing, not JSON null) but could not be used: the caller passes
-- whether its typed reading succeeded, so each value is parsed only once.
CREATE OR REPLACE FUNCTION {target}.unusable(raw jsonb, usable boolean) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_typeof(raw) <> 'null', false) AND NOT coalesce(usable, false)
$$;

-- Present with a JSON type that cannot be read as text / as a list (NULL when missing).
CREATE OR REPLACE FUNCTION {target}.wrong_text(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_typeof(v) NOT IN ('string', 'number', 'null')
$$;

CREATE OR REPLACE FUNCTION {target}.wrong_list(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_typeof(v) NOT IN ('array', 'null')
$$;

-- A stage as Knit sends it: {id, text} (documented), {id, name} (our first guess), or either nested
-- once as {"currentStage": {...}} (one of Knit's pages shows it so). The stage object, unwrapped;
-- any other value as sent, so its type can still be checked.
CREATE OR REPLACE FUNCTION {target}.j_stage(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'object' AND v ? 'currentStage' THEN v -> 'currentStage' ELSE v END
$$;

-- A stage's name: its name, else its text (a stage may carry both; name was read first before
-- Knit documented text, so it keeps precedence and stored rows keep their meaning).
CREATE OR REPLACE FUNCTION {target}.stage_name(stage jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce({target}.j_text(stage -> 'name'), {target}.j_text(stage -> 'text'))
$$;

-- An interview's creator: Knit documents createdBy (a user: id, email, employeeId); creator is accepted too.
CREATE OR REPLACE FUNCTION {target}.interview_creator(interview jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce({target}.j_obj(interview -> 'createdBy'), {target}.j_obj(interview -> 'creator'))
$$;

-- A location as text. Knit documents a string ("Austin, TX, US"), kept as sent. An object (our
-- first guess: city, state, country, zipCode) reads as its city, state and country joined by ", ",
-- absent or empty parts left out (the documented form: no zip code); with none of them it is NULL.
CREATE OR REPLACE FUNCTION {target}.location_text(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'object'
                THEN nullif(concat_ws(', ', nullif({target}.j_text(v -> 'city'), ''),
                                      nullif({target}.j_text(v -> 'state'), ''),
                                      nullif({target}.j_text(v -> 'country'), '')), '')
                ELSE {target}.j_text(v) END
$$;

-- A location that was sent but cannot be read: neither text nor an object, or an object whose
-- city, state or country is not text. An object without those parts is not an error (NULL text).
CREATE OR REPLACE FUNCTION {target}.wrong_location(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'object'
                THEN coalesce({target}.wrong_text(v -> 'city'), false)
                     OR coalesce({target}.wrong_text(v -> 'state'), false)
                     OR coalesce({target}.wrong_text(v -> 'country'), false)
                ELSE coalesce({target}.wrong_text(v), false) END
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

-- ---------------------------------------------------------------------------------------------
-- Added after the first release (issue 17). Each step keeps a populated schema's rows, and a new
-- schema ends with the same columns in the same order as an upgraded one.
-- ---------------------------------------------------------------------------------------------

-- Snapshots: a complete, reconciled initial_sync run lists every active application, so an
-- application whose latest event (version_*) is alive and older than such a run is absent from it:
-- deleted as of the earliest such run. version_* stays the application's own latest event (so a
-- record.deleted keeps its own deleted_at, and any later event decides again); these say which
-- snapshot deleted it. Its version is the run's place in time: no event of the run is about this
-- application, so first_seq alone orders it against the application's events.
ALTER TABLE {target}.ats_applications
    ADD COLUMN IF NOT EXISTS snapshot_run_id    text,
    ADD COLUMN IF NOT EXISTS snapshot_first_seq bigint;
COMMENT ON COLUMN {target}.ats_applications.snapshot_run_id IS
    'The initial_sync run that did not contain this application, so it is deleted as of that run (NULL otherwise).';
-- Only snapshot-deleted rows: re-attributing or withdrawing a snapshot's deletions reads few rows.
CREATE INDEX IF NOT EXISTS ats_applications_snapshot_idx
    ON {target}.ats_applications (integration_id, snapshot_first_seq) WHERE snapshot_run_id IS NOT NULL;

-- Offers: the typed columns are our reading of fields Knit does not document; raw is what it sent.
COMMENT ON COLUMN {target}.ats_application_offers.raw IS
    'The offer object exactly as Knit sent it; the typed columns are a guess at its field names.';

-- Attachments: Knit's links are signed URLs that expire, so the column says so, and the element is
-- kept whole beside it.
DO $do$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = '{target}.ats_application_attachments'::regclass
                 AND attname = 'link' AND NOT attisdropped) THEN
        ALTER TABLE {target}.ats_application_attachments RENAME COLUMN link TO expiring_link;
    END IF;
END
$do$;
ALTER TABLE {target}.ats_application_attachments ADD COLUMN IF NOT EXISTS raw jsonb;
-- Rows written before raw existed: their element is still in the application's models, at the same place.
UPDATE {target}.ats_application_attachments c
SET raw = a.models -> 'attachments' -> (c.position - 1)
FROM {target}.ats_applications a
WHERE c.raw IS NULL AND a.integration_id = c.integration_id AND a.application_id = c.application_id;
COMMENT ON COLUMN {target}.ats_application_attachments.expiring_link IS
    'Knit''s link to the file as sent: a signed URL that expires. Download it soon after the run; do not store it as a permanent address.';
COMMENT ON COLUMN {target}.ats_application_attachments.raw IS
    'The attachment object exactly as Knit sent it.';

-- The ledger: the models each run carried, and what its snapshot step did.
ALTER TABLE {target}.normalized_runs
    ADD COLUMN IF NOT EXISTS models           text[],
    ADD COLUMN IF NOT EXISTS snapshot         text,
    ADD COLUMN IF NOT EXISTS snapshot_note    text,
    ADD COLUMN IF NOT EXISTS snapshot_at      timestamptz,
    ADD COLUMN IF NOT EXISTS snapshot_deleted bigint;
COMMENT ON COLUMN {target}.normalized_runs.models IS
    'Knit model ids the run''s record.new/modified events carried (NULL: normalized before this was recorded).';
COMMENT ON COLUMN {target}.normalized_runs.snapshot IS
    'initial_sync runs only: applied (applications it did not contain are deleted as of it) or skipped (see snapshot_note).';
COMMENT ON COLUMN {target}.normalized_runs.snapshot_at IS
    'deleted_at of the applications an applied snapshot deletes: Knit''s start of the run.';
COMMENT ON COLUMN {target}.normalized_runs.snapshot_deleted IS
    'Applications deleted because this snapshot did not contain them, counted when it was last normalized.';

-- ---------------------------------------------------------------------------------------------
-- Added for Knit's documented application model (issue 22). Each new column is filled once, when it
-- is added, from the raw value the row already keeps, with the same reading normalization uses: an
-- upgraded schema then holds what normalizing its runs again would write.
-- ---------------------------------------------------------------------------------------------

COMMENT ON COLUMN {target}.ats_applications.is_deleted IS
    'Knit sent record.deleted (the application was removed from the source ATS or marked inactive there), or an initial_sync snapshot did not contain it (snapshot_run_id).';

-- customFields: an object beside the six models in eventData, not one of them; kept as sent. The
-- same upgrade reads the stages that were nested as {"currentStage": {...}}, which earlier releases
-- left NULL (their stage history fills in when their runs are normalized again: history.sql
-- corrects the versions).
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = '{target}.ats_applications'::regclass
                     AND attname = 'custom_fields' AND NOT attisdropped) THEN
        ALTER TABLE {target}.ats_applications ADD COLUMN custom_fields jsonb;
        UPDATE {target}.ats_applications
        SET custom_fields = {target}.j_obj(models -> 'customFields')
        WHERE models ? 'customFields';
        UPDATE {target}.ats_applications
        SET current_stage_id = {target}.j_id({target}.j_stage(models -> 'currentStage') -> 'id'),
            current_stage_name = {target}.stage_name({target}.j_stage(models -> 'currentStage'))
        WHERE models -> 'currentStage' ? 'currentStage';
    END IF;
END
$do$;
COMMENT ON COLUMN {target}.ats_applications.custom_fields IS
    'eventData.customFields exactly as Knit sent it (an object, possibly empty); NULL when absent.';
COMMENT ON COLUMN {target}.ats_applications.current_stage_name IS
    'The stage''s text (Knit''s documented key) or name; the stage may be nested as {"currentStage": {...}}.';

-- A candidate's location: Knit documents a string; location keeps the value as sent (string or object).
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = '{target}.ats_candidates'::regclass
                     AND attname = 'location_text' AND NOT attisdropped) THEN
        ALTER TABLE {target}.ats_candidates ADD COLUMN location_text text;
        UPDATE {target}.ats_candidates
        SET location_text = {target}.location_text(location)
        WHERE location IS NOT NULL;
    END IF;
END
$do$;
COMMENT ON COLUMN {target}.ats_candidates.location IS
    'The candidate''s location exactly as Knit sent it: documented as a string, an object in older payloads.';
COMMENT ON COLUMN {target}.ats_candidates.location_text IS
    'The location as text: a string as sent; an object as its city, state and country joined by ", ".';

-- Interviews: Knit documents a status, the stage the interview belongs to, its creator and a location.
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = '{target}.ats_application_interviews'::regclass
                     AND attname = 'stage_id' AND NOT attisdropped) THEN
        ALTER TABLE {target}.ats_application_interviews
            ADD COLUMN stage_id      text,
            ADD COLUMN stage_name    text,
            ADD COLUMN creator_id    text,
            ADD COLUMN creator_email text,
            ADD COLUMN location      text;
        UPDATE {target}.ats_application_interviews
        SET stage_id = {target}.j_id({target}.j_stage(raw -> 'stage') -> 'id'),
            stage_name = {target}.stage_name({target}.j_stage(raw -> 'stage')),
            creator_id = {target}.j_id({target}.interview_creator(raw) -> 'id'),
            creator_email = {target}.j_text({target}.interview_creator(raw) -> 'email'),
            location = {target}.j_text(raw -> 'location')
        WHERE raw ?| array['stage', 'createdBy', 'creator', 'location'];
    END IF;
END
$do$;
COMMENT ON COLUMN {target}.ats_application_interviews.status IS
    'As sent; Knit documents SCHEDULED, AWAITING_FEEDBACK, COMPLETE, CANCELLED.';
COMMENT ON COLUMN {target}.ats_application_interviews.creator_id IS
    'The interview''s createdBy user (also read from creator).';
