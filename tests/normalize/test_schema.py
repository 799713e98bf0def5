"""The target schema's DDL upgrades a populated schema of an earlier release in place, and runs again harmlessly."""

from __future__ import annotations

import json
from typing import Any

from normalize_landing import DATA_TABLES, JOB_TABLES, Lander, app, application, dump, rows

from knit_provider.normalize import normalize_runs
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas, quote_ident
from knit_provider.sql import load_sql

# What issue 26 added (the change feed): its columns, trigger and index on every table, its functions, sequence,
# deleted keys and ledger columns. The view reads every application column, so it goes first (the DDL makes it again).
_FEED_TABLES = (*DATA_TABLES, *JOB_TABLES)
_TO_ISSUE_23 = (
    "DROP VIEW {t}.ats_applications_with_jobs;\n"
    + "".join(
        f"DROP TRIGGER knit_keep_deleted ON {{t}}.{table};\n"
        f"DROP TRIGGER knit_mark_changed ON {{t}}.{table};\n"
        f"ALTER TABLE {{t}}.{table} DROP COLUMN knit_changed_seq, DROP COLUMN knit_created_seq, "
        "DROP COLUMN knit_changed_at;\n"
        for table in _FEED_TABLES
    )
    + """
DROP FUNCTION {t}.knit_change_feed_attach(regclass), {t}.knit_change_counts(bigint, text[]),
    {t}.knit_finish_change(), {t}.knit_keep_deleted(), {t}.knit_mark_changed(), {t}.knit_key_columns(regclass),
    {t}.knit_change_watermark(), {t}.knit_begin_change(), {t}.knit_change_lock_base();
DROP TABLE {t}.knit_deleted_rows;
DROP SEQUENCE {t}.knit_change_seq;
ALTER TABLE {t}.normalized_runs DROP COLUMN changed_seq, DROP COLUMN table_changes;
COMMENT ON SCHEMA {t} IS NULL;
"""
)

# What issue 22 added (Knit's documented application model), and what normalization before it
# wrote for a stage nested as {"currentStage": {...}}: nothing. (No release before issue 23 had the
# view of applications with their jobs, which reads every application column.)
_TO_ISSUE_17 = (
    _TO_ISSUE_23
    + """
ALTER TABLE {t}.ats_applications DROP COLUMN custom_fields;
UPDATE {t}.ats_applications SET current_stage_id = NULL, current_stage_name = NULL
WHERE models -> 'currentStage' ? 'currentStage';
ALTER TABLE {t}.ats_candidates DROP COLUMN location_text;
ALTER TABLE {t}.ats_application_interviews DROP COLUMN stage_id, DROP COLUMN stage_name,
    DROP COLUMN creator_id, DROP COLUMN creator_email, DROP COLUMN location;
COMMENT ON SCHEMA {t} IS NULL;
"""
)

# What issue 17 added to a schema created before it (the first release had none of these).
_TO_FIRST_RELEASE = (
    _TO_ISSUE_17
    + """
ALTER TABLE {t}.ats_application_attachments RENAME COLUMN expiring_link TO link;
ALTER TABLE {t}.ats_application_attachments DROP COLUMN raw;
DROP INDEX {t}.ats_applications_snapshot_idx;
ALTER TABLE {t}.ats_applications DROP COLUMN snapshot_run_id, DROP COLUMN snapshot_first_seq;
ALTER TABLE {t}.normalized_runs DROP COLUMN models, DROP COLUMN snapshot, DROP COLUMN snapshot_note,
    DROP COLUMN snapshot_at, DROP COLUMN snapshot_deleted;
COMMENT ON SCHEMA {t} IS NULL;
"""
)


def test_a_populated_first_release_schema_is_upgraded_in_place(conn: Any, schemas: Schemas, lander: Lander) -> None:
    ensure_schema(conn, schemas)
    t = quote_ident(schemas.target)
    attachments = [
        {"type": "RESUME", "name": "cv.pdf", "link": "https://files/cv?expires=1"},
        "junk",
        {"type": "OTHER", "name": "n.txt", "link": "https://files/n?expires=1"},
    ]
    with conn, conn.cursor() as cur:
        cur.execute(_TO_FIRST_RELEASE.replace("{t}", t))
        cur.execute(
            f"INSERT INTO {t}.ats_applications (integration_id, application_id, models, version_run_id, "
            "version_first_seq, version_seq, version_event_id, data_run_id, data_first_seq, data_seq, "
            "data_event_id) VALUES ('int-1', 'old', %s, 'sr-old', 0, 0, 'ev-old', 'sr-old', 0, 0, 'ev-old')",
            (json.dumps({"attachments": attachments}),),
        )
        cur.execute(
            f"INSERT INTO {t}.ats_application_attachments VALUES "
            "('int-1', 'old', 1, 'RESUME', 'cv.pdf', 'https://files/cv?expires=1'), "
            "('int-1', 'old', 3, 'OTHER', 'n.txt', 'https://files/n?expires=1')"
        )

    ensure_schema(conn, schemas)

    kept = rows(
        conn, schemas, "SELECT position, expiring_link, raw FROM {t}.ats_application_attachments ORDER BY position"
    )
    assert kept == [
        {"position": n, "expiring_link": attachments[n - 1]["link"], "raw": attachments[n - 1]}  # type: ignore[index]
        for n in (1, 3)
    ]
    old = app(conn, schemas, "old")
    assert (old["snapshot_run_id"], old["is_deleted"]) == (None, False)

    with conn, conn.cursor() as cur:  # the DDL once more, as ensure_schema would after any edit
        cur.execute(load_sql("normalize/schema.sql", schemas))

    # A newer snapshot sees the upgraded row like any other.
    snapshot = lander.initial()
    snapshot.new("a1", data=application("a1"))
    snapshot.complete()
    (result,) = normalize_runs(conn, [snapshot.run_id], schemas)
    assert (result.snapshot, result.snapshot_deleted) == ("applied", 1)
    assert app(conn, schemas, "old")["snapshot_run_id"] == snapshot.run_id


def _columns(conn: Any, schemas: Schemas) -> list[tuple[str, str, str]]:
    return [
        (r["table_name"], r["column_name"], r["data_type"])
        for r in rows(
            conn,
            schemas,
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY table_name, ordinal_position",
            (schemas.target,),
        )
    ]


def test_a_populated_issue_17_schema_gains_the_documented_columns_filled_from_what_it_kept(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    run = lander.run()
    documented = application("doc", stage=None)
    documented["currentStage"] = {"currentStage": {"id": "st-2", "text": "Onsite"}}
    documented["customFields"] = {"score": 4}
    documented["info"]["candidate"]["location"] = "Austin, TX, US"
    documented["interviews"] = [
        {"id": "iv1", "status": "COMPLETE", "stage": {"id": "st-2", "text": "Onsite"}, "createdBy": {"id": "u1"}},
        {"id": "iv2", "location": "Zoom", "stage": {"currentStage": {"id": "st-1", "name": "Screen"}}},
    ]
    guessed = application("guess", stage="s1")
    guessed["info"]["candidate"]["location"] = {"city": "London", "state": None, "country": "GB"}
    guessed["interviews"] = [{"id": "iv3", "creator": {"id": "u2", "email": "u2@x"}}]
    run.new("doc", data=documented)
    run.new("guess", data=guessed)
    run.complete()
    normalize_runs(conn, [run.run_id], schemas)
    tables = {name: DATA_TABLES[name] for name in ("ats_applications", "ats_candidates", "ats_application_interviews")}
    normalized = dump(conn, schemas, tables)
    fresh = _columns(conn, schemas)
    with conn, conn.cursor() as cur:
        cur.execute(_TO_ISSUE_17.replace("{t}", quote_ident(schemas.target)))
    assert app(conn, schemas, "doc")["current_stage_id"] is None  # as the release before read it

    ensure_schema(conn, schemas)

    assert dump(conn, schemas, tables) == normalized  # what normalizing the run writes today
    assert _columns(conn, schemas) == fresh  # same columns, same order as a new schema
    assert (app(conn, schemas, "doc")["current_stage_name"], app(conn, schemas, "doc")["custom_fields"]) == (
        "Onsite",
        {"score": 4},
    )
    with conn, conn.cursor() as cur:  # the DDL once more changes nothing
        cur.execute(load_sql("normalize/schema.sql", schemas))
    assert dump(conn, schemas, tables) == normalized


# What issue 23 added (data types as a seam): the jobs' tables and view, and the ledger's generic columns.
_TO_ISSUE_22 = (
    _TO_ISSUE_23
    + """
DROP TABLE {t}.ats_jobs, {t}.ats_job_departments, {t}.ats_job_offices, {t}.ats_job_hiring_managers,
    {t}.ats_job_recruiters, {t}.ats_job_stages;
DROP INDEX {t}.normalized_runs_snapshots_idx;
ALTER TABLE {t}.normalized_runs DROP COLUMN data_type, DROP COLUMN records, DROP COLUMN records_changed,
    DROP COLUMN changes, ALTER COLUMN applications SET NOT NULL, ALTER COLUMN applications_changed SET NOT NULL,
    ALTER COLUMN candidates_changed SET NOT NULL;
COMMENT ON SCHEMA {t} IS NULL;
"""
)


def test_a_populated_issue_22_ledger_gains_the_data_type_columns_filled_from_its_own(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    initial = lander.initial()
    for app_id in ("a1", "a2", "a3"):
        initial.new(app_id, data=application(app_id))
    initial.complete()
    delta = lander.run()
    delta.modified("a1", data=application("a1", stage="s2"))
    delta.deleted("a2")
    delta.complete()
    normalize_runs(conn, [initial.run_id, delta.run_id], schemas)
    normalized = dump(conn, schemas, DATA_TABLES)
    ledger_sql = (
        "SELECT sync_run_id, data_type, records, records_changed, changes, applications, applications_changed, "
        "candidates_changed, snapshot, snapshot_deleted, times_normalized FROM {t}.normalized_runs ORDER BY first_seq"
    )
    ledger = rows(conn, schemas, ledger_sql)
    fresh = _columns(conn, schemas)
    with conn, conn.cursor() as cur:
        cur.execute(_TO_ISSUE_22.replace("{t}", quote_ident(schemas.target)))

    ensure_schema(conn, schemas)

    assert dump(conn, schemas, DATA_TABLES) == normalized  # every row kept
    assert rows(conn, schemas, ledger_sql) == ledger  # the ledger as today's normalization writes it
    assert [(r["data_type"], r["records"], r["changes"]) for r in ledger] == [
        ("ats_applications", 3, {"ats_candidates": 3}),
        ("ats_applications", 2, {"ats_candidates": 1}),
    ]
    assert _columns(conn, schemas) == fresh  # same columns, same order as a new schema
    # The upgraded ledger works: the runs normalize again (changing nothing) and a new snapshot applies.
    again = normalize_runs(conn, [initial.run_id, delta.run_id], schemas)
    assert [r.records_changed for r in again] == [0, 0]
    resync = lander.initial()
    resync.new("a1", data=application("a1", stage="s2"))
    resync.complete()
    (snapshot,) = normalize_runs(conn, [resync.run_id], schemas)
    assert (snapshot.snapshot, snapshot.snapshot_deleted) == ("applied", 1)


def test_a_populated_issue_23_schema_gains_the_change_feed_with_every_row_at_0(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    initial = lander.initial()
    for app_id in ("a1", "a2"):
        data = application(app_id)
        data["interviews"] = [{"id": "iv1", "status": "DONE"}, {"id": "iv2", "status": "SCHEDULED"}]
        data["offers"] = [{"id": "o1", "status": "SENT"}]
        data["attachments"] = [{"type": "RESUME", "name": "cv.pdf", "link": "https://files/cv"}]
        initial.new(app_id, data=data)
    initial.complete()
    jobs = lander.run(data_type="ats_jobs")
    lists = ("departments", "offices", "hiringManagers", "recruiters", "stages")
    jobs.new("job-1", data={"info": {"id": "job-1", "title": "Engineer"}} | {key: [{"id": "x1"}] for key in lists})
    jobs.complete()
    normalize_runs(conn, [initial.run_id, jobs.run_id], schemas)
    tables = {**DATA_TABLES, **JOB_TABLES}
    normalized = dump(conn, schemas, tables)
    fresh = _columns(conn, schemas)
    with conn, conn.cursor() as cur:
        cur.execute(_TO_ISSUE_23.replace("{t}", quote_ident(schemas.target)))

    ensure_schema(conn, schemas)

    assert dump(conn, schemas, tables) == normalized  # every row kept, its data unchanged
    marks = {
        table: rows(conn, schemas, f"SELECT DISTINCT knit_changed_seq, knit_created_seq FROM {{t}}.{table}")
        for table in tables
    }
    assert marks == {table: [{"knit_changed_seq": 0, "knit_created_seq": 0}] for table in tables}
    assert _columns(conn, schemas) == fresh  # same columns, same order as a new schema
    # Normalizing works on the upgraded schema: its changes take a value above the rows from before.
    delta = lander.run()
    delta.modified("a1", data=application("a1", stage="s2"))
    delta.complete()
    (result,) = normalize_runs(conn, [delta.run_id], schemas)
    assert result.changed_seq is not None
    assert result.changed_seq > 0
    assert rows(conn, schemas, "SELECT application_id, knit_changed_seq FROM {t}.ats_applications ORDER BY 1") == [
        {"application_id": "a1", "knit_changed_seq": result.changed_seq},
        {"application_id": "a2", "knit_changed_seq": 0},
    ]
    # a1's lists are gone (its new data has none): recorded, though they were from before the feed.
    gone = "SELECT table_name, row_key ->> 'position' AS p FROM {t}.knit_deleted_rows ORDER BY 1, 2"
    assert [tuple(r.values()) for r in rows(conn, schemas, gone)] == [
        ("ats_application_attachments", "1"),
        ("ats_application_interviews", "1"),
        ("ats_application_interviews", "2"),
        ("ats_application_offers", "1"),
    ]
