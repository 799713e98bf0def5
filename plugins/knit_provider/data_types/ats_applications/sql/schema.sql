-- The tables of Knit's ats_applications data type. Idempotent, like the shared schema (sql/normalize/
-- schema.sql, applied first): every statement must be safe to run again on an existing schema.
--
-- Versions: an event's version is (its run's first_seq, its own seq). Every table that is fed by
-- "the highest version wins" keeps the version it came from, so a lower one can never overwrite it.


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
