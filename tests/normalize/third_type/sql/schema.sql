-- The one table of the test-only ats_offices type, with the bookkeeping the shared snapshot step reads.
CREATE TABLE IF NOT EXISTS {target}.ats_offices (
    integration_id      text    NOT NULL,
    office_id           text    NOT NULL,
    name                text,
    location            text,
    is_deleted          boolean NOT NULL DEFAULT false,
    deleted_at          timestamptz,
    models              jsonb,
    version_first_seq   bigint  NOT NULL,
    version_seq         bigint  NOT NULL,
    data_first_seq      bigint,
    data_seq            bigint,
    snapshot_run_id     text,
    snapshot_first_seq  bigint,
    PRIMARY KEY (integration_id, office_id)
);
