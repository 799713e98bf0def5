"""The change feed (``sql/normalize/change_feed.sql``): which rows each normalization changed, and when all are final.

Runs are landed through ``land_events`` and normalized by the runner into the real embedded Postgres.
Every normalization is checked against one rule, read from the tables before and after it
(:func:`check_change`): a new key carries the normalization's value in ``knit_changed_seq`` and
``knit_created_seq``; a key whose data changed carries it in ``knit_changed_seq`` and keeps its
``knit_created_seq``; a key whose data did not change keeps all three marks; a key gone is in
``knit_deleted_rows`` with the value; and the counts the result and the ledger carry are those.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from normalize_landing import DATA_TABLES, FEED_COLUMNS, JOB_TABLES, Lander, application, rows

from knit_provider.data_types import known
from knit_provider.normalize import NormalizeResult, normalize_runs
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas, quote_ident

ZERO = {"inserted": 0, "updated": 0, "soft_deleted": 0, "deleted": 0}


@dataclass(frozen=True)
class Marked:
    """One row: its data columns and its three marks."""

    data: dict[str, Any]
    changed: int
    created: int
    at: datetime


Feed = dict[str, dict[tuple[Any, ...], Marked]]


def key_columns(conn: Any, schemas: Schemas, table: str) -> list[str]:
    t = quote_ident(schemas.target)
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {t}.knit_key_columns(%s::regclass)", (f"{t}.{quote_ident(table)}",))
        (keys,) = cur.fetchone()
    return list(keys)


def read_feed(conn: Any, schemas: Schemas, tables: Mapping[str, str] = DATA_TABLES) -> Feed:
    """Every row of the tables by primary key."""
    feed: Feed = {}
    for table in tables:
        keys = key_columns(conn, schemas, table)
        found = feed[table] = {}
        for row in rows(conn, schemas, f"SELECT * FROM {{t}}.{table}"):
            data = {name: value for name, value in row.items() if name not in FEED_COLUMNS}
            marked = Marked(data, row["knit_changed_seq"], row["knit_created_seq"], row["knit_changed_at"])
            found[tuple(row[k] for k in keys)] = marked
    return feed


def deleted_keys(
    conn: Any, schemas: Schemas, value: int, tables: Mapping[str, str] = DATA_TABLES
) -> dict[str, set[tuple[Any, ...]]]:
    """The keys knit_deleted_rows records for the change ``value``, per table, as key tuples."""
    recorded = rows(
        conn,
        schemas,
        "SELECT table_name, row_key FROM {t}.knit_deleted_rows WHERE knit_changed_seq = %s",
        (value,),
    )
    found: dict[str, set[tuple[Any, ...]]] = {table: set() for table in tables}
    for r in recorded:
        keys = key_columns(conn, schemas, r["table_name"])
        assert sorted(r["row_key"]) == sorted(keys)  # the primary key's columns, exactly
        found[r["table_name"]].add(tuple(r["row_key"][k] for k in keys))
    return found


def check_change(
    before: Feed, after: Feed, deleted: dict[str, set[tuple[Any, ...]]], value: int
) -> dict[str, dict[str, int]]:
    """Assert the feed's rule for one normalization with ``value``; return what it did per table."""
    counts: dict[str, dict[str, int]] = {}
    stamps = set()
    for table, now in after.items():
        was = before[table]
        count = counts[table] = dict(ZERO)
        for key, row in now.items():
            old = was.get(key)
            if old is not None and old.data == row.data:
                assert row == old, (table, key, "unchanged data keeps its marks")
                continue
            assert row.changed == value, (table, key, "a changed row carries the value")
            assert row.created == (value if old is None else old.created), (table, key, "created kept")
            stamps.add(row.at)
            count["inserted" if old is None else "updated"] += 1
            count["soft_deleted"] += bool(row.data.get("is_deleted"))
        assert deleted[table] == set(was) - set(now), (table, "the keys gone, exactly")
        count["deleted"] = len(deleted[table])
    assert len(stamps) <= 1, "one knit_changed_at per normalization"
    return counts


def normalize_checked(
    conn: Any, schemas: Schemas, run_id: str, tables: Mapping[str, str] = DATA_TABLES
) -> tuple[NormalizeResult, Feed]:
    """Normalize one run, check the rule, the result's and the ledger's counts; the result and the rows after."""
    ensure_schema(conn, schemas)
    before = read_feed(conn, schemas, tables)
    (result,) = normalize_runs(conn, [run_id], schemas)
    assert result.changed_seq is not None
    after = read_feed(conn, schemas, tables)
    counts = check_change(before, after, deleted_keys(conn, schemas, result.changed_seq, tables), result.changed_seq)
    assert result.tables == counts
    (ledger,) = rows(
        conn, schemas, "SELECT changed_seq, table_changes FROM {t}.normalized_runs WHERE sync_run_id = %s", (run_id,)
    )
    assert ledger == {"changed_seq": result.changed_seq, "table_changes": counts}
    return result, after


def with_lists(
    app_id: str, interviews: list[str], *, offers: tuple[str, ...] = ("o1",), stage: str = "s1"
) -> dict[str, Any]:
    """An application with interviews of the given statuses (ids by position), offers and one attachment."""
    data = application(app_id, stage=stage)
    data["interviews"] = [{"id": f"iv{n}", "status": status} for n, status in enumerate(interviews, 1)]
    data["offers"] = [{"id": offer, "status": "SENT"} for offer in offers]
    data["attachments"] = [{"type": "RESUME", "name": "cv.pdf", "link": "https://files/cv"}]
    return data


def counts(**tables: dict[str, int]) -> dict[str, dict[str, int]]:
    return {table: {**ZERO, **tables.get(table, {})} for table in DATA_TABLES}


def test_every_table_of_every_data_type_has_the_columns_index_and_trigger(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    ensure_schema(conn, schemas)
    listed = {table for spec in known() for table in spec.tables}
    base = {
        r["relname"]
        for r in rows(
            conn,
            schemas,
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'r' "
            "AND c.relname = ANY(%s)",
            (quote_ident(schemas.target), sorted(listed)),
        )
    }
    assert base == {*DATA_TABLES, *JOB_TABLES}
    for table in sorted(base):
        columns = rows(
            conn,
            schemas,
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND column_name LIKE 'knit\\_%%' ORDER BY ordinal_position",
            (schemas.target, table),
        )
        assert [tuple(c.values()) for c in columns] == [
            ("knit_changed_seq", "bigint", "NO"),
            ("knit_created_seq", "bigint", "NO"),
            ("knit_changed_at", "timestamp with time zone", "NO"),
        ], table
        (index,) = rows(
            conn,
            schemas,
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            (schemas.target, f"{table}_changed_idx"),
        )
        assert index["indexdef"].endswith("(knit_changed_seq)"), table
        triggers = rows(
            conn,
            schemas,
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY tgname",
            (f"{quote_ident(schemas.target)}.{table}",),
        )
        assert triggers == [{"tgname": "knit_keep_deleted"}, {"tgname": "knit_mark_changed"}], table

    # The view of applications with their jobs carries the application's marks, not the job's.
    applications = lander.run()
    applications.new("a1", data=application("a1"))
    applications.complete()
    jobs = lander.run(data_type="ats_jobs")
    jobs.new("job-1", data={"info": {"id": "job-1", "title": "Engineer", "status": "OPEN"}})
    jobs.complete()
    first, second = normalize_runs(conn, [applications.run_id, jobs.run_id], schemas)
    assert first.changed_seq != second.changed_seq
    marks = "SELECT application_id, job_title, knit_changed_seq, knit_created_seq, knit_changed_at FROM {t}."
    (viewed,) = rows(conn, schemas, marks + "ats_applications_with_jobs")
    (own,) = rows(conn, schemas, marks.replace("job_title", "'Engineer' AS job_title") + "ats_applications")
    assert viewed == own
    assert viewed["knit_changed_seq"] == first.changed_seq


def test_a_first_normalization_gives_every_row_one_value_and_a_second_changes_nothing(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    initial = lander.initial()
    for app_id in ("a1", "a2", "a3"):
        initial.new(app_id, data=with_lists(app_id, ["SCHEDULED", "DONE"]))
    initial.complete()

    first, normalized = normalize_checked(conn, schemas, initial.run_id)

    value = first.changed_seq
    assert {(row.changed, row.created) for table in normalized.values() for row in table.values()} == {(value, value)}
    assert first.tables == counts(
        ats_applications={"inserted": 3},
        ats_application_interviews={"inserted": 6},
        ats_application_offers={"inserted": 3},
        ats_application_attachments={"inserted": 3},
        ats_candidates={"inserted": 3},
        ats_application_versions={"inserted": 3},
        ats_application_stage_history={"inserted": 3},
    )

    again, after = normalize_checked(conn, schemas, initial.run_id)

    assert after == normalized  # every row's marks as they were
    assert value is not None
    assert again.changed_seq is not None
    assert again.changed_seq > value
    assert again.tables == counts()
    assert rows(conn, schemas, "SELECT * FROM {t}.knit_deleted_rows") == []


def test_a_delta_marks_what_it_modified_deleted_and_added(conn: Any, schemas: Schemas, lander: Lander) -> None:
    initial = lander.initial()
    for app_id in ("a1", "a2", "a3"):
        initial.new(app_id, data=with_lists(app_id, ["DONE"]))
    initial.complete()
    first, _ = normalize_checked(conn, schemas, initial.run_id)
    delta = lander.run()
    delta.modified("a1", data=with_lists("a1", ["DONE"], stage="s2"))
    delta.deleted("a2")
    delta.new("a4", data=with_lists("a4", []))
    delta.complete()

    result, after = normalize_checked(conn, schemas, delta.run_id)

    assert result.tables["ats_applications"] == {"inserted": 1, "updated": 2, "soft_deleted": 1, "deleted": 0}
    # a1 gains a stage and its first one a left_at; a4 gets one; a2's deletion has no stage.
    assert result.tables["ats_application_stage_history"] == {**ZERO, "inserted": 2, "updated": 1}
    assert result.tables["ats_application_versions"] == {**ZERO, "inserted": 3}
    # a1's lists were written again as they were: kept.
    assert result.tables["ats_application_interviews"] == ZERO
    apps = after["ats_applications"]
    assert (apps[("int-1", "a1")].changed, apps[("int-1", "a1")].created) == (result.changed_seq, first.changed_seq)
    assert (apps[("int-1", "a3")].changed, apps[("int-1", "a3")].created) == (first.changed_seq, first.changed_seq)


def test_a_snapshot_marks_the_records_it_deletes(conn: Any, schemas: Schemas, lander: Lander) -> None:
    initial = lander.initial()
    for app_id in ("a1", "a2", "a3"):
        initial.new(app_id, data=application(app_id))
    initial.complete()
    normalize_checked(conn, schemas, initial.run_id)
    resync = lander.initial()
    resync.new("a1", data=application("a1"))
    resync.complete()

    result, after = normalize_checked(conn, schemas, resync.run_id)

    assert (result.snapshot, result.snapshot_deleted) == ("applied", 2)
    assert result.tables["ats_applications"] == {"inserted": 0, "updated": 3, "soft_deleted": 2, "deleted": 0}
    assert after["ats_applications"][("int-1", "a2")].changed == result.changed_seq


def test_a_shorter_list_records_the_keys_gone_and_keeps_the_marks_of_rows_written_back(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    initial = lander.initial()
    initial.new("a1", data=with_lists("a1", ["DONE", "SCHEDULED", "SCHEDULED"]))
    initial.new("a2", data=with_lists("a2", ["DONE", "DONE"]))
    initial.complete()
    first, normalized = normalize_checked(conn, schemas, initial.run_id)
    delta = lander.run()
    delta.modified("a1", data=with_lists("a1", ["DONE", "CANCELLED"]))
    delta.complete()

    result, after = normalize_checked(conn, schemas, delta.run_id)

    assert result.tables["ats_application_interviews"] == {**ZERO, "updated": 1, "deleted": 1}
    assert result.tables["ats_application_offers"] == ZERO
    (gone,) = rows(conn, schemas, "SELECT table_name, row_key, knit_changed_seq FROM {t}.knit_deleted_rows", None)
    assert gone == {
        "table_name": "ats_application_interviews",
        "row_key": {"integration_id": "int-1", "application_id": "a1", "position": 3},
        "knit_changed_seq": result.changed_seq,
    }
    interviews = after["ats_application_interviews"]
    assert interviews[("int-1", "a1", 1)] == normalized["ats_application_interviews"][("int-1", "a1", 1)]
    changed = interviews[("int-1", "a1", 2)]
    assert (changed.data["status"], changed.changed, changed.created) == (
        "CANCELLED",
        result.changed_seq,
        first.changed_seq,
    )
    assert after["ats_application_offers"] == normalized["ats_application_offers"]


def test_an_older_run_normalized_after_a_newer_one_marks_only_what_it_changes(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    initial = lander.initial()
    for app_id in ("a1", "a2"):
        initial.new(app_id, data=application(app_id, stage="s1"))
    initial.complete()
    older = lander.run()
    older.modified("a1", data=application("a1", stage="s2"))
    older.complete()
    newer = lander.run()
    newer.modified("a1", data=application("a1", stage="s3"))
    newer.modified("a2", data=application("a2", stage="s3"))
    newer.complete()
    normalize_checked(conn, schemas, initial.run_id)
    later, before = normalize_checked(conn, schemas, newer.run_id)

    result, after = normalize_checked(conn, schemas, older.run_id)

    # Its version and a stage between the two: taken with its value; the application rows stay the newer run's.
    (version,) = [v for v in after["ats_application_versions"].values() if v.data["sync_run_id"] == older.run_id]
    assert (version.changed, version.created) == (result.changed_seq, result.changed_seq)
    history = after["ats_application_stage_history"]
    assert [history[("int-1", "a1", n)].data["stage_id"] for n in (1, 2, 3)] == ["s1", "s2", "s3"]
    assert history[("int-1", "a1", 3)].created == result.changed_seq
    assert after["ats_applications"] == before["ats_applications"]
    assert after["ats_applications"][("int-1", "a1")].changed == later.changed_seq
    assert after["ats_candidates"] == before["ats_candidates"]
    assert all(row.changed == later.changed_seq for key, row in history.items() if key[1] == "a2")


@pytest.fixture
def connections(pg_url: str) -> Iterator[tuple[Any, Any]]:
    """Two more connections to the module's database: one holds a change open, one normalizes meanwhile."""
    opened = (psycopg2.connect(pg_url), psycopg2.connect(pg_url))
    yield opened
    for connection in opened:
        connection.close()


def watermark(conn: Any, schemas: Schemas) -> int:
    (row,) = rows(conn, schemas, "SELECT {t}.knit_change_watermark() AS w")
    return int(row["w"])


def last_value(conn: Any, schemas: Schemas) -> int:
    (row,) = rows(conn, schemas, "SELECT last_value FROM {t}.knit_change_seq")
    return int(row["last_value"])


def begin_change(connection: Any, schemas: Schemas) -> int:
    """Open a change on ``connection`` and leave its transaction open; its value."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT {quote_ident(schemas.target)}.knit_begin_change()")
        (value,) = cur.fetchone()
    return int(value)


def test_the_watermark_stays_below_an_open_change_while_a_later_one_commits(
    conn: Any, schemas: Schemas, lander: Lander, connections: tuple[Any, Any]
) -> None:
    first = lander.run()
    first.new("a1")
    first.complete()
    normalize_runs(conn, [first.run_id], schemas)
    assert watermark(conn, schemas) == last_value(conn, schemas)  # no change open
    other = lander.run(integration_id="int-2")
    other.new("b1")
    other.complete()
    holder, normalizer = connections

    a = begin_change(holder, schemas)
    (concurrent,) = normalize_runs(normalizer, [other.run_id], schemas)  # another integration: not blocked
    b = concurrent.changed_seq
    assert b is not None
    assert b > a
    assert watermark(conn, schemas) < a  # b is committed, but a may still write rows below it

    holder.commit()
    assert watermark(conn, schemas) >= b
    assert watermark(conn, schemas) == last_value(conn, schemas)

    rolled_back = begin_change(holder, schemas)
    assert watermark(conn, schemas) < rolled_back
    holder.rollback()
    assert watermark(conn, schemas) == rolled_back == last_value(conn, schemas)


def test_a_row_deleted_by_hand_is_refused_outside_a_change_and_recorded_inside_one(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    run = lander.run()
    run.new("a1", data=with_lists("a1", ["DONE", "DONE"]))
    run.complete()
    normalize_runs(conn, [run.run_id], schemas)
    t = quote_ident(schemas.target)
    delete = f"DELETE FROM {t}.ats_application_interviews WHERE application_id = 'a1' AND position = 2"

    with pytest.raises(psycopg2.errors.RaiseException) as refused, conn, conn.cursor() as cur:
        cur.execute(delete)
    assert "are deleted by Knit normalization only" in refused.value.diag.message_primary
    assert f"{schemas.target}.knit_begin_change()" in str(refused.value)
    assert len(rows(conn, schemas, "SELECT * FROM {t}.ats_application_interviews")) == 2

    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {t}.knit_begin_change()")
        (value,) = cur.fetchone()
        cur.execute(delete)
        cur.execute(f"SELECT {t}.knit_finish_change()")
    assert rows(conn, schemas, "SELECT table_name, row_key, knit_changed_seq FROM {t}.knit_deleted_rows") == [
        {
            "table_name": "ats_application_interviews",
            "row_key": {"integration_id": "int-1", "application_id": "a1", "position": 2},
            "knit_changed_seq": value,
        }
    ]


def test_a_row_updated_by_hand_is_refused_outside_a_change_and_marked_inside_one(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    run = lander.run()
    run.new("a1", data=with_lists("a1", ["DONE"]))
    run.complete()
    normalize_runs(conn, [run.run_id], schemas)
    t = quote_ident(schemas.target)
    # It names no feed column: the trigger marks the row, as it does the normalization's own UPDATEs.
    update = f"UPDATE {t}.ats_applications SET status = 'ARCHIVED' WHERE application_id = 'a1'"

    with pytest.raises(psycopg2.errors.RaiseException) as refused, conn, conn.cursor() as cur:
        cur.execute(update)
    assert "are updated by Knit normalization only" in refused.value.diag.message_primary
    assert f"{schemas.target}.knit_begin_change()" in str(refused.value)

    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {t}.knit_begin_change()")
        (value,) = cur.fetchone()
        cur.execute(update)
        cur.execute(f"SELECT {t}.knit_finish_change()")
    assert rows(conn, schemas, "SELECT status, knit_changed_seq FROM {t}.ats_applications") == [
        {"status": "ARCHIVED", "knit_changed_seq": value}
    ]


def test_a_key_deleted_twice_in_one_change_is_judged_by_its_row_from_before_the_change(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    run = lander.run()
    run.new("a1", data=with_lists("a1", ["DONE", "SENT"]))
    run.complete()
    normalize_runs(conn, [run.run_id], schemas)
    before = read_feed(conn, schemas)
    t = quote_ident(schemas.target)
    table = f"{t}.ats_application_interviews"
    names = [name for name in before["ats_application_interviews"][("int-1", "a1", 1)].data]
    columns = ", ".join(names)
    other = columns.replace("status", "'CANCELLED'")

    # Deleted, written with other data, deleted again and written back as it was: nothing changed.
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {t}.knit_begin_change()")
        cur.execute(f"CREATE TEMP TABLE _kept ON COMMIT DROP AS SELECT {columns} FROM {table}")
        cur.execute(f"DELETE FROM {table}")
        cur.execute(f"INSERT INTO {table} ({columns}) SELECT {other} FROM _kept")
        cur.execute(f"DELETE FROM {table}")
        cur.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _kept")
        # A hash join finds the last deletion of the key first: the plan must not decide which row counts.
        cur.execute("SET LOCAL enable_nestloop = off; SET LOCAL enable_mergejoin = off")
        cur.execute(f"SELECT {t}.knit_finish_change()")

    assert read_feed(conn, schemas) == before
    assert rows(conn, schemas, "SELECT * FROM {t}.knit_deleted_rows") == []
