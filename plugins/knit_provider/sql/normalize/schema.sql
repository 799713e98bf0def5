-- What every data type's tables share: the tolerant accessors and the ledger of normalized runs.
-- Applied first, then each data type's own schema.sql (knit_provider/data_types/<name>/sql/).
-- Idempotent: applied under an advisory lock whenever the text changes, so every statement must be
-- safe to run again on an existing schema.

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
    'initial_sync runs only: applied (records it did not contain are deleted as of it) or skipped (see snapshot_note).';
COMMENT ON COLUMN {target}.normalized_runs.snapshot_at IS
    'deleted_at of the records an applied snapshot deletes: Knit''s start of the run.';
COMMENT ON COLUMN {target}.normalized_runs.snapshot_deleted IS
    'Records deleted because this snapshot did not contain them, counted when it was last normalized.';

-- ---------------------------------------------------------------------------------------------
-- Added for data types beside applications (issue 23). One ledger for every type: run ids are
-- Knit's, unique across data types. Rows of earlier releases are ats_applications runs, and their
-- counts move to the generic columns; the application columns stay filled for ats_applications runs
-- (readers of earlier releases) and are NULL for the other types.
-- ---------------------------------------------------------------------------------------------
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = '{target}.normalized_runs'::regclass
                     AND attname = 'data_type' AND NOT attisdropped) THEN
        ALTER TABLE {target}.normalized_runs
            ADD COLUMN data_type       text   NOT NULL DEFAULT 'ats_applications',
            ADD COLUMN records         bigint,
            ADD COLUMN records_changed bigint,
            ADD COLUMN changes         jsonb,
            ALTER COLUMN applications DROP NOT NULL,
            ALTER COLUMN applications_changed DROP NOT NULL,
            ALTER COLUMN candidates_changed DROP NOT NULL;
        UPDATE {target}.normalized_runs
        SET records = applications, records_changed = applications_changed,
            changes = jsonb_build_object('ats_candidates', candidates_changed);
        ALTER TABLE {target}.normalized_runs
            ALTER COLUMN data_type DROP DEFAULT,
            ALTER COLUMN records SET NOT NULL,
            ALTER COLUMN records_changed SET NOT NULL,
            ALTER COLUMN changes SET NOT NULL;
    END IF;
END
$do$;
-- The snapshot step reads the applied snapshots of one integration and data type.
CREATE INDEX IF NOT EXISTS normalized_runs_snapshots_idx
    ON {target}.normalized_runs (data_type, integration_id, first_seq) WHERE snapshot = 'applied';
COMMENT ON COLUMN {target}.normalized_runs.data_type IS
    'Knit''s dataType of the run (ats_applications, ats_jobs, ...).';
COMMENT ON COLUMN {target}.normalized_runs.records IS
    'Distinct records (applications, jobs, ...) the run''s record events named.';
COMMENT ON COLUMN {target}.normalized_runs.records_changed IS
    'Records whose row this normalization changed.';
COMMENT ON COLUMN {target}.normalized_runs.changes IS
    'Rows changed in the data type''s other tables, by table (ats_applications: ats_candidates).';
COMMENT ON COLUMN {target}.normalized_runs.applications IS
    'ats_applications runs only: the same as records (kept for readers of earlier releases).';
COMMENT ON COLUMN {target}.normalized_runs.applications_changed IS
    'ats_applications runs only: the same as records_changed.';
COMMENT ON COLUMN {target}.normalized_runs.candidates_changed IS
    'ats_applications runs only: the same as changes ->> ''ats_candidates''.';

-- Added for the change feed (issue 26, normalize/change_feed.sql): each normalization's value and
-- what it did per table (what the asset event carries). NULL for normalizations before it.
ALTER TABLE {target}.normalized_runs
    ADD COLUMN IF NOT EXISTS changed_seq   bigint,
    ADD COLUMN IF NOT EXISTS table_changes jsonb;
COMMENT ON COLUMN {target}.normalized_runs.changed_seq IS
    'The change feed value of the run''s last normalization: the rows it changed carry it in knit_changed_seq.';
COMMENT ON COLUMN {target}.normalized_runs.table_changes IS
    'What its last normalization did per table: {table: {inserted, updated, soft_deleted, deleted}}.';
