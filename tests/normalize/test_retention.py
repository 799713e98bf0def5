"""Retention: prune removes only normalized runs' events past the retention (never a run not yet
normalized, never inside the dedup window), keeps the tables, and a backfill after it works, holding the
partitions lock only to drop a partition; a redelivery after the dedup window of a normalized run is not stored."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest
from normalize_landing import Lander, Run, dump, rows

from knit_devtools.services import wait_until
from knit_provider.__main__ import main
from knit_provider.landing.retention import maintain, parse_age, prune, retention_setting
from knit_provider.normalize import normalize_runs, pending_runs, runs_completed_between
from knit_provider.settings import Schemas, quote_ident


def _age(conn: Any, schemas: Schemas, run_id: str, days: float) -> None:
    """Make run ``run_id`` have landed ``days`` earlier: its rows (they move partition), its span, its ids."""
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT event_id FROM {schemas.landing}.events WHERE sync_run_id = %s", (run_id,))
        ids = [row[0] for row in cur.fetchall()]
        shift = {"ids": ids, "run": run_id, "days": days}
        cur.execute(
            f"UPDATE {schemas.landing}.events SET received_at = received_at - %(days)s * interval '1 day' "
            "WHERE sync_run_id = %(run)s",
            shift,
        )
        cur.execute(
            f"UPDATE {schemas.landing}.event_ids SET received_at = received_at - %(days)s * interval '1 day' "
            "WHERE event_id = ANY(%(ids)s)",
            shift,
        )
        cur.execute(
            f"UPDATE {schemas.landing}.sync_runs SET first_received_at = first_received_at - "
            "%(days)s * interval '1 day', last_received_at = last_received_at - %(days)s * interval '1 day', "
            "complete_at = complete_at - %(days)s * interval '1 day' WHERE sync_run_id = %(run)s",
            shift,
        )


def _weekly(conn: Any, schemas: Schemas, days: int = 80) -> None:
    """The layout of a store in service for ``days`` days: a partition per week (the first one is gone)."""
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {schemas.landing}.events_legacy")
        cur.execute(
            f"SELECT {schemas.landing}.ensure_event_partitions(now() - %s * interval '1 day', %s)",
            (days, days // 7 + 3),
        )


def _events(conn: Any, schemas: Schemas, run_id: str) -> int:
    return len(rows(conn, schemas, "SELECT 1 FROM {l}.events WHERE sync_run_id = %s", (run_id,)))


def _complete_run(lander: Lander, *apps: str) -> Run:
    run = lander.run()
    for app_id in apps:
        run.new(app_id)
    run.complete()
    return run


def test_retention_reads_ages_and_refuses_one_inside_the_dedup_window(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age(" 2w ") == timedelta(weeks=2)
    with pytest.raises(ValueError, match=r"'30 days' is not an age: .*30d, 12h, 2w"):
        parse_age("30 days")
    monkeypatch.delenv("KNIT_LANDING_RETENTION", raising=False)
    assert retention_setting() is None
    assert retention_setting({"retention": "45d"}) == timedelta(days=45)
    monkeypatch.setenv("KNIT_LANDING_RETENTION", "3d")
    with pytest.raises(ValueError, match=r"\$KNIT_LANDING_RETENTION.*shorter than the dedup window.*at least 7d"):
        retention_setting({"retention": "45d"})


def test_prune_removes_only_normalized_runs_past_the_retention_and_a_backfill_after_it_works(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    done_old = _complete_run(lander, "a1", "a2")
    waiting_old = _complete_run(lander, "b1")  # complete, never normalized
    done_recent = _complete_run(lander, "c1")
    incomplete = lander.run()
    incomplete.new("d1")
    normalize_runs(conn, [done_old.run_id, done_recent.run_id], schemas)
    for run, days in ((done_old, 40), (waiting_old, 45), (incomplete, 50), (done_recent, 5)):
        _age(conn, schemas, run.run_id, days)
    tables = dump(conn, schemas)

    with pytest.raises(ValueError, match="shorter than the dedup window"):
        prune(conn, schemas, timedelta(days=3))
    planned = prune(conn, schemas, timedelta(days=30), dry_run=True)
    assert (planned.runs, planned.events_deleted, planned.dry_run) == (1, 4, True)
    assert _events(conn, schemas, done_old.run_id) == 4, "a dry run removes nothing"

    report = prune(conn, schemas, timedelta(days=30))
    # The old table holds the other runs too: no partition goes whole, the run's rows are deleted.
    assert (report.runs, report.events_deleted, report.partitions_dropped) == (1, 4, [])
    assert _events(conn, schemas, done_old.run_id) == 0
    assert [_events(conn, schemas, r.run_id) for r in (waiting_old, done_recent, incomplete)] == [3, 3, 1]
    assert len(rows(conn, schemas, "SELECT 1 FROM {l}.sync_runs")) == 4, "sync_runs is kept"
    assert dump(conn, schemas) == tables, "the normalized tables are kept"
    assert prune(conn, schemas, timedelta(days=30)).runs == 0, "a run is pruned once"

    # A backfill over every run: the pruned one is passed over, the others normalize as before.
    start, end = datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)
    results = {
        r.sync_run_id: r for r in normalize_runs(conn, runs_completed_between(conn, schemas, start, end), schemas)
    }
    assert "removed by retention" in (results[done_old.run_id].skipped or "")
    assert results[waiting_old.run_id].applications == 1
    assert results[done_recent.run_id].skipped is None
    assert pending_runs(conn, schemas) == []
    after = dump(conn, schemas)
    assert after["ats_applications"][:2] == tables["ats_applications"][:2], "a1, a2 as they were"


def test_a_partition_goes_whole_only_when_every_run_in_it_is_normalized_and_old(
    conn: Any, schemas: Schemas, lander: Lander, pg_url: str
) -> None:
    _weekly(conn, schemas)
    alone = _complete_run(lander, "a1")
    shared_done = _complete_run(lander, "b1")
    shared_waiting = _complete_run(lander, "b2")
    normalize_runs(conn, [alone.run_id, shared_done.run_id], schemas)
    _age(conn, schemas, alone.run_id, 60)
    _age(conn, schemas, shared_done.run_id, 40)
    _age(conn, schemas, shared_waiting.run_id, 40)

    (alone_week,), (shared_week,) = (
        rows(
            conn,
            schemas,
            "SELECT DISTINCT tableoid::regclass::text AS p FROM {l}.events WHERE sync_run_id = %s",
            (r.run_id,),
        )
        for r in (alone, shared_waiting)
    )
    # A long reader of events (a normalization, say): the drop gives up after its lock timeout, the
    # receiver is never queued behind it for long, and the next pass drops the partition.
    reader = psycopg2.connect(pg_url)
    try:
        with reader.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {schemas.landing}.events")
        busy = prune(conn, schemas, timedelta(days=30), drop_lock_timeout="100ms")
    finally:
        reader.close()
    assert busy.partitions_dropped == []
    assert alone_week["p"].split(".")[1] in busy.partitions_busy
    assert busy.runs == 2
    assert _events(conn, schemas, alone.run_id) == 3, "left for the next pass"
    report = prune(conn, schemas, timedelta(days=30))
    assert report.runs == 0, "the runs were marked pruned by the first pass"
    dropped = {f"{schemas.landing}.{name}" for name in report.partitions_dropped}
    # The week holding only the normalized run goes whole (with the empty weeks before the cutoff).
    assert alone_week["p"] in dropped
    assert shared_week["p"] not in dropped
    assert busy.events_deleted == 3, "the other normalized run's rows, beside the one still waiting"
    assert [_events(conn, schemas, r.run_id) for r in (alone, shared_done, shared_waiting)] == [0, 0, 3]


def test_a_redelivery_after_the_window_of_a_normalized_run_is_not_stored(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    run = lander.run()
    first = run.new("a1", stage="s1")
    run.modified("a1", stage="s2")
    run.complete()
    normalize_runs(conn, [run.run_id], schemas)
    tables = dump(conn, schemas)
    _age(conn, schemas, run.run_id, 10)
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {schemas.landing}.forget_event_ids()")
    counted = rows(conn, schemas, "SELECT record_events FROM {l}.sync_runs WHERE sync_run_id = %s", (run.run_id,))

    # Knit delivers the first event again (or someone replays it), after the dedup window: the run is closed.
    run.record("record.new", "a1", event_id=first, stage="s1")
    assert len(rows(conn, schemas, "SELECT 1 FROM {l}.events WHERE event_id = %s", (first,))) == 1
    assert rows(conn, schemas, "SELECT record_events FROM {l}.sync_runs WHERE sync_run_id = %s", (run.run_id,)) == (
        counted
    ), "reconciliation's landed count is unchanged"
    assert pending_runs(conn, schemas) == [], "the run stays normalized"
    normalize_runs(conn, [run.run_id], schemas)
    assert dump(conn, schemas) == tables


def test_prune_holds_no_partitions_lock_while_it_deletes(
    conn: Any, schemas: Schemas, lander: Lander, pg_url: str
) -> None:
    """A receiver starting while prune deletes row by row creates its partitions: only a drop takes the lock."""
    old = _complete_run(lander, "a1")
    normalize_runs(conn, [old.run_id], schemas)
    _age(conn, schemas, old.run_id, 40)
    blocker = psycopg2.connect(pg_url)  # holds the run's row: prune waits inside its delete transaction
    pruner = psycopg2.connect(pg_url)
    probe = psycopg2.connect(pg_url)
    try:
        with blocker.cursor() as cur:
            cur.execute(f"SELECT 1 FROM {schemas.landing}.sync_runs WHERE sync_run_id = %s FOR UPDATE", (old.run_id,))
        pruning = ThreadPoolExecutor(1).submit(prune, pruner, schemas, timedelta(days=30))

        def prune_waits() -> bool:
            with probe, probe.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                    (pruner.get_backend_pid(),),
                )
                return bool(cur.fetchone()[0])

        wait_until(prune_waits, 30, "prune to wait for the run's row")
        with probe, probe.cursor() as cur:
            cur.execute(
                "SELECT pg_try_advisory_xact_lock(hashtext('knit_provider.partitions:' || %s))",
                (quote_ident(schemas.landing),),
            )
            assert cur.fetchone()[0], "the partitions lock is free while prune deletes"
        blocker.rollback()
        assert pruning.result(timeout=60).runs == 1
    finally:
        blocker.close()
        probe.close()
        pruner.close()


def test_prune_and_maintain_from_the_command_line_and_the_maintenance_pass(
    conn: Any, schemas: Schemas, lander: Lander, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _complete_run(lander, "a1")
    normalize_runs(conn, [old.run_id], schemas)
    _age(conn, schemas, old.run_id, 40)
    monkeypatch.delenv("KNIT_LANDING_RETENTION", raising=False)
    argv = ["--database-url", pg_url, "--landing-schema", schemas.landing, "prune"]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([*argv, "--older-than", "30d", "--dry-run"]) == 0
    assert "would remove: the events of 1 normalized runs: 3 deleted row by row" in out.getvalue()
    assert main(argv) == 2, "no age given and no retention set"
    assert _events(conn, schemas, old.run_id) == 3

    without = maintain(conn, schemas, None)
    assert without.prune is None
    assert "every landed event is kept" in without.describe()
    assert _events(conn, schemas, old.run_id) == 3
    monkeypatch.setenv("KNIT_LANDING_RETENTION", "30d")
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(argv) == 0
    assert "removed: the events of 1 normalized runs: 3 deleted row by row" in out.getvalue()
    assert _events(conn, schemas, old.run_id) == 0
