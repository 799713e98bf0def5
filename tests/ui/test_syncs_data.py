"""The Knit syncs page's data and HTML on a real landing store: what it shows, and that it stays cheap."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import psycopg2
import pytest
from knit_landing_helpers import Lander, ids

from knit_provider.data_types import enabled
from knit_provider.settings import Schemas
from knit_provider.ui.page import render
from knit_provider.ui.syncs import SyncRun, add_dead_letters, add_normalized, add_progress, recent_runs, run_progress

SCHEMAS = Schemas()


@pytest.fixture
def conn(landing_url: str) -> Any:
    connection = psycopg2.connect(landing_url)
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


def _dead_letter(lander: Lander, run: str, replayed: bool = False) -> None:
    body = json.dumps({"run": run, "n": time.monotonic_ns()}).encode()
    lander.execute(
        "INSERT INTO knit_landing.dead_letters (integration_id, reason, headers, body, body_sha256, sync_run_id,"
        " replayed_at) VALUES (%s, 'bad record', '{}', %s, sha256(%s), %s, CASE WHEN %s THEN now() END)",
        (lander.integration_id, body, body, run, replayed),
    )


def test_recent_runs_per_integration_with_counts_dead_letters_and_normalization(landing_url: str, conn: Any) -> None:
    lander = Lander(landing_url, integration_id="int-page-a")
    try:
        job, prefix = ids("page")
        for n in range(12):
            lander.records(job, f"{prefix}-{n}", 2)
        done = f"{prefix}-11"
        lander.all_consumed(job, done, 2)
        lander.execute("UPDATE knit_landing.sync_runs SET normalized_at = now() WHERE sync_run_id = %s", (done,))
        _dead_letter(lander, done)
        _dead_letter(lander, done)
        _dead_letter(lander, done, replayed=True)
    finally:
        lander.close()
    runs = [r for r in recent_runs(conn, SCHEMAS, per_integration=10) if r.integration_id == "int-page-a"]
    assert add_dead_letters(conn, SCHEMAS, runs)
    assert [r.sync_run_id for r in runs] == [f"{prefix}-{n}" for n in range(11, 1, -1)], "newest ten, newest first"
    newest = runs[0]
    assert (newest.complete, newest.completed_by, newest.record_events) == (True, "allConsumed", 2)
    assert (newest.processed, newest.emitted, newest.consumed, newest.missing) == (2, 2, 2, 0)
    assert newest.dead_letters == 2, "a replayed dead letter is no longer outstanding"
    assert newest.to_normalized is not None
    assert newest.to_normalized.total_seconds() >= 0
    assert not runs[1].complete
    assert runs[1].normalized_at is None
    assert runs[1].missing is None


def test_progress_of_a_running_sync_is_cumulative_and_ends_at_its_last_event(landing_url: str, conn: Any) -> None:
    lander = Lander(landing_url, integration_id="int-page-b")
    try:
        job, run = ids("progress")
        for _ in range(5):
            lander.records(job, run, 30)
    finally:
        lander.close()
    points = run_progress(conn, SCHEMAS, run, steps=4)
    counts = [count for _, count in points]
    assert counts[0] == 0
    assert counts == sorted(counts)
    assert len(points) <= 4
    times = [at for at, _ in points]
    assert times == sorted(times)
    (running,) = [r for r in recent_runs(conn, SCHEMAS) if r.sync_run_id == run]
    add_progress(conn, SCHEMAS, [running])
    assert running.progress[-1] == (running.last_received_at, 150)


def test_the_page_escapes_what_it_shows(landing_url: str, conn: Any) -> None:
    lander = Lander(landing_url, integration_id="<script>alert(1)</script>")
    try:
        job, run = ids("<b>")
        lander.records(job, run, 1)
    finally:
        lander.close()
    runs = recent_runs(conn, SCHEMAS)
    add_progress(conn, SCHEMAS, runs)
    html = render(runs, now=datetime.now(timezone.utc), ui_root="", landing_schema="knit_landing", data_types=enabled())
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>" not in html
    chosen = render(
        [],
        now=datetime.now(timezone.utc),
        ui_root="",
        landing_schema="knit_landing",
        data_types=enabled(),
        data_type='"><script>alert(2)</script>',
    )
    assert "<script>alert(2)" not in chosen, "the data type the query names is escaped"
    assert "&lt;script&gt;alert(2)" in chosen


def test_dead_letters_need_only_their_id_columns(landing_url: str, conn: Any) -> None:
    """A role that may not read the dead letters still gets the page, with ? and the grant to add."""
    from knit_provider.landing.dead_letters import INFO_COLUMNS

    lander = Lander(landing_url, integration_id="int-page-c")
    try:
        job, run = ids("grants")
        lander.records(job, run, 1)
        _dead_letter(lander, run)
    finally:
        lander.close()
    role = f"knit_page_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role}")
        cur.execute(f"GRANT USAGE ON SCHEMA knit_landing TO {role}")
        cur.execute(f"GRANT SELECT ON knit_landing.sync_runs, knit_landing.events TO {role}")
        try:
            cur.execute(f"SET ROLE {role}")
            runs = [r for r in recent_runs(conn, SCHEMAS) if r.sync_run_id == run]
            assert not add_dead_letters(conn, SCHEMAS, runs)
            assert runs[0].dead_letters is None
            html = render(
                runs,
                now=datetime.now(timezone.utc),
                ui_root="",
                landing_schema="knit_landing",
                data_types=enabled(),
                dead_letters_readable=False,
            )
            assert "may not read their ids" in html
            cur.execute("RESET ROLE")
            cur.execute(f"GRANT SELECT ({', '.join(INFO_COLUMNS)}) ON knit_landing.dead_letters TO {role}")
            cur.execute(f"SET ROLE {role}")
            assert add_dead_letters(conn, SCHEMAS, runs)
            assert runs[0].dead_letters == 1
        finally:
            cur.execute("RESET ROLE")
            cur.execute(f"DROP OWNED BY {role}")
            cur.execute(f"DROP ROLE {role}")


def _plan(conn: Any, sql: str, params: dict[str, Any]) -> str:
    with conn.cursor() as cur:
        cur.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


def test_the_queries_never_scan_the_events_table(landing_url: str, conn: Any) -> None:
    """On a store of a million events, both queries reach events only through an index, and quickly."""
    from knit_provider.sql import load_sql

    with conn.cursor() as cur:
        # A million small events: one running sync of 900,000 and 100 runs of 1,000 interleaved with it.
        cur.execute(
            "INSERT INTO knit_landing.events (event_id, event_type, sync_run_id, sync_job_id, integration_id,"
            " payload) SELECT 'bulk-' || g, 'record.new', CASE WHEN g % 10 = 0 THEN 'bulk-run-' || (g % 1000) / 10"
            " ELSE 'bulk-big' END, 'bulk-job', 'int-bulk', '{}'::jsonb FROM generate_series(1, 1000000) AS g"
        )
        cur.execute(
            "INSERT INTO knit_landing.sync_runs (sync_run_id, sync_job_id, integration_id, first_seq,"
            " first_received_at, last_received_at, record_events) SELECT sync_run_id, 'bulk-job', 'int-bulk',"
            " min(seq), now(), now(), count(*) FROM knit_landing.events WHERE sync_run_id LIKE 'bulk-%'"
            " GROUP BY sync_run_id"
        )
        cur.execute("VACUUM ANALYZE knit_landing.events")
        cur.execute("ANALYZE knit_landing.sync_runs")
    recent_params = {"per_integration": 10, "data_type": None, "untyped": "ats_applications"}
    recent = _plan(conn, load_sql("ui/recent_runs.sql", SCHEMAS), recent_params)
    chosen = _plan(conn, load_sql("ui/recent_runs.sql", SCHEMAS), {**recent_params, "data_type": "ats_jobs"})
    assert "events" not in chosen, chosen
    progress = _plan(conn, load_sql("ui/run_progress.sql", SCHEMAS), {"sync_run_id": "bulk-big", "buckets": 40})
    assert "events" not in recent, recent
    # Which index counts a slice is the planner's choice (the run's index, or the primary key when
    # the run fills the slice); no partition holding events is ever scanned (the empty weeks ahead
    # cost nothing to look at). Its speed is a benchmark's business, not this test's.
    with conn.cursor() as cur:
        for partition in set(re.findall(r"Seq Scan on (events\w*)", progress)):
            cur.execute(f"SELECT EXISTS (SELECT FROM knit_landing.{partition})")
            assert not cur.fetchone()[0], f"{partition} holds events and is scanned:\n{progress}"
    points = run_progress(conn, SCHEMAS, "bulk-big")
    assert len(points) == 40
    assert points[-1][1] < 900_000  # events before the last slice's first one


def test_the_registry_is_listed_with_each_state_and_knits_errors(landing_url: str, conn: Any) -> None:
    from knit_provider.ui.page import registry_section
    from knit_provider.ui.syncs import registry

    errors = [{"msg": "<token> revoked"}]
    for integration_id, data in (
        ("int-reg-ok", {"integrationId": "int-reg-ok"}),
        ("int-reg-bad", {"integrationId": "int-reg-bad", "errors": errors}),
    ):
        lander = Lander(landing_url, integration_id=integration_id)
        try:
            lander.land([{"eventId": str(uuid.uuid4()), "eventType": "app.integration.activate", "eventData": data}])
        finally:
            lander.close()
    lander = Lander(landing_url, integration_id="int-reg-runs")
    try:
        lander.records(*ids("registry"), 1)
    finally:
        lander.close()
    found = {i.integration_id: i for i in registry(conn, SCHEMAS) or []}
    assert (found["int-reg-ok"].state, found["int-reg-bad"].state) == ("active", "failed_validation")
    assert found["int-reg-runs"].state == "seen_only_through_syncs", "integrations known only from their runs too"
    html = registry_section(list(found.values()), "knit_landing", enabled())
    assert '<code>int-reg-bad</code><td><span class="state bad">failed_validation</span>' in html
    assert "&lt;token&gt; revoked" in html, "Knit's errors are shown, escaped"
    assert "<token>" not in html
    assert (
        "by the daily run of each data type's DAG (<code>knit_ats_applications</code>, <code>knit_ats_jobs</code>)"
        in html
    )
    page = render(
        [],
        now=datetime.now(timezone.utc),
        ui_root="",
        landing_schema="knit_landing",
        data_types=enabled(),
        integrations=[],
    )
    assert "No integration yet" in page
    assert "No sync run has landed yet" in page


def test_runs_are_shown_and_filtered_by_data_type(landing_url: str, conn: Any) -> None:
    """Each run names its type; a filter ranks one type's runs alone, so a busy type hides no other's."""
    integration = "int-page-types"
    job, prefix = ids("types")
    landers = {name: Lander(landing_url, integration, name) for name in ("ats_applications", "ats_jobs")}
    untyped = Lander(landing_url, integration, None)  # type: ignore[arg-type]  # earlier payloads named none
    try:
        untyped.records(job, f"{prefix}-untyped", 1)
        landers["ats_applications"].records(job, f"{prefix}-app", 1)
        for n in range(3):
            landers["ats_jobs"].records(job, f"{prefix}-job-{n}", 1)
    finally:
        for lander in (*landers.values(), untyped):
            lander.close()

    def shown(data_type: str | None) -> list[tuple[str, str | None]]:
        runs = recent_runs(conn, SCHEMAS, per_integration=3, data_type=data_type)
        return [(r.sync_run_id, r.data_type) for r in runs if r.integration_id == integration]

    jobs = [(f"{prefix}-job-{n}", "ats_jobs") for n in (2, 1, 0)]
    assert shown(None) == jobs, "the newest three of any type"
    assert shown("ats_jobs") == jobs
    assert shown("ats_applications") == [
        (f"{prefix}-app", "ats_applications"),
        (f"{prefix}-untyped", "ats_applications"),
    ], "a run landed without a type is read as ats_applications, as the normalizer reads it"
    assert shown("hris_employees") == []

    runs = [
        r
        for r in recent_runs(conn, SCHEMAS, per_integration=3, data_type="ats_applications")
        if r.integration_id == integration
    ]
    html = render(
        runs,
        now=datetime.now(timezone.utc),
        ui_root="",
        landing_schema="knit_landing",
        data_types=enabled(),
        data_type="ats_applications",
    )
    assert "Recent runs of data type <code>ats_applications</code> per integration" in html
    assert (
        '<nav class="types">Data type: <a href="./">all</a><strong>ATS applications (ats_applications)</strong>'
        '<a href="?data_type=ats_jobs">ATS jobs (ats_jobs)</a></nav>'
    ) in html
    assert html.count('<a href="?data_type=ats_applications" title="only ats_applications runs">') == 2
    assert "ats_jobs</a><br>" not in html


def test_the_page_names_each_data_types_dag() -> None:
    """Where the page points at a DAG, it is the type's own (spec.dag_id), not knit_ats_applications alone."""
    now = datetime.now(timezone.utc)
    every = render([], now=now, ui_root="", landing_schema="knit_landing", data_types=enabled())
    assert "Trigger a data type's DAG (<code>knit_ats_applications</code>, <code>knit_ats_jobs</code>)" in every
    jobs = render([], now=now, ui_root="", landing_schema="knit_landing", data_types=enabled(), data_type="ats_jobs")
    assert "No sync run of <code>ats_jobs</code> has landed yet. Trigger <code>knit_ats_jobs</code>, or" in jobs
    other = render([], now=now, ui_root="", landing_schema="knit_landing", data_types=enabled(), data_type="hris_x")
    assert "No sync run of <code>hris_x</code> has landed yet. Start one, or" in other
    assert "<strong>hris_x</strong></nav>" in other, "a type Knit syncs but the provider does not, shown chosen"


def test_a_normalized_run_shows_what_the_ledger_counted(landing_url: str, conn: Any) -> None:
    """Records named and changed, read from normalized_runs, in the type's own words; no ledger, no counts."""
    from knit_provider.normalize.apply import normalize_runs

    integration = "int-page-ledger"
    job, run = ids("ledger")
    jobs = Lander(landing_url, integration, "ats_jobs")
    try:
        jobs.records(job, run, 2)
        jobs.all_consumed(job, run, 2)
    finally:
        jobs.close()
    runs = [r for r in recent_runs(conn, SCHEMAS) if r.sync_run_id == run]
    assert not add_normalized(conn, SCHEMAS, runs), "this module's store has no ledger before a normalization"
    assert runs[0].records is None
    writer = psycopg2.connect(landing_url)
    try:
        normalize_runs(writer, [run], SCHEMAS)
    finally:
        writer.close()
    runs = [r for r in recent_runs(conn, SCHEMAS) if r.sync_run_id == run]
    assert add_normalized(conn, SCHEMAS, runs)
    assert (runs[0].records, runs[0].records_changed) == (2, 2)
    html = render(runs, now=datetime.now(timezone.utc), ui_root="", landing_schema="knit_landing", data_types=enabled())
    assert '<span class="muted">2 jobs, 2 changed</span>' in html
    role = f"knit_page_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role}")
        try:
            cur.execute(f"SET ROLE {role}")
            assert not add_normalized(conn, SCHEMAS, runs), "a role that may not read the ledger gets no counts"
        finally:
            cur.execute("RESET ROLE")
            cur.execute(f"DROP ROLE {role}")


def test_a_normalized_run_shows_the_rows_it_changed_per_table_as_its_asset_event_counted_them(
    landing_url: str, conn: Any
) -> None:
    """The ledger's table_changes and changed_seq, opened per table under the totals; a run normalized before
    the change feed (both NULL) shows its records alone; every table name is escaped."""
    from knit_provider.normalize.apply import normalize_runs

    job, run = ids("feed")
    _, old = ids("feed-old")
    jobs = Lander(landing_url, "int-page-feed", "ats_jobs")
    try:
        for run_id, count in ((run, 2), (old, 1)):
            jobs.records(job, run_id, count)
            jobs.all_consumed(job, run_id, count)
    finally:
        jobs.close()
    writer = psycopg2.connect(landing_url)
    try:
        normalize_runs(writer, [run, old], SCHEMAS)
        with writer, writer.cursor() as cur:  # as the change feed's migration leaves a row normalized before it
            cur.execute(
                "UPDATE knit.normalized_runs SET changed_seq = NULL, table_changes = NULL WHERE sync_run_id = %s",
                (old,),
            )
            cur.execute("SELECT changed_seq FROM knit.normalized_runs WHERE sync_run_id = %s", (run,))
            (changed_seq,) = cur.fetchone()
    finally:
        writer.close()
    runs = {r.sync_run_id: r for r in recent_runs(conn, SCHEMAS) if r.sync_run_id in (run, old)}
    assert add_normalized(conn, SCHEMAS, list(runs.values()))
    new_run, old_run = runs[run], runs[old]
    assert changed_seq > 0
    assert new_run.changed_seq == changed_seq
    assert new_run.table_changes is not None
    assert new_run.table_changes["ats_jobs"] == {"inserted": 2, "updated": 0, "soft_deleted": 0, "deleted": 0}
    assert (old_run.records, old_run.changed_seq, old_run.table_changes) == (1, None, None)

    def page(shown: SyncRun) -> str:
        return render([shown], now=datetime.now(timezone.utc), ui_root="", landing_schema="knit", data_types=enabled())

    html = page(new_run)
    assert "rows +2</summary><code>ats_jobs</code> +2<br>" in html, "the jobs' children: none in these records"
    assert f'<span class="muted">knit_changed_seq = {changed_seq}</span></details>' in html
    html = page(old_run)
    assert '<span class="muted">1 jobs, 1 changed</span>' in html
    assert "<details" not in html, "normalized before the change feed: no rows per table, and no error"
    counts = {"inserted": 0, "updated": 3, "soft_deleted": 1, "deleted": 1}
    html = page(replace(new_run, table_changes={"<b>x</b>": counts, "ats_jobs": dict.fromkeys(counts, 0)}))
    assert "<code>&lt;b&gt;x&lt;/b&gt;</code> ~3 &minus;1, 1 soft-deleted" in html
    assert "<b>x" not in html
    assert "<code>ats_jobs</code>" not in html, "a table the run did not change is left out"
    html = page(replace(new_run, table_changes={"ats_jobs": dict.fromkeys(counts, 0)}))
    assert ">no rows changed</span>" in html
    assert "<details" not in html


def test_a_ledger_not_yet_migrated_for_the_change_feed_still_shows_its_counts(conn: Any) -> None:
    """A new release may serve the page before its first normalization adds changed_seq and table_changes."""
    schemas = Schemas(target=f"knit_page_old_{uuid.uuid4().hex[:8]}")
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE SCHEMA {schemas.target}; CREATE TABLE {schemas.target}.normalized_runs "
            "(sync_run_id text PRIMARY KEY, records integer NOT NULL, records_changed integer NOT NULL);"
            f"INSERT INTO {schemas.target}.normalized_runs VALUES ('run-old', 3, 1)"
        )
    try:
        now = datetime.now(timezone.utc)
        runs = [SyncRun("run-old", None, None, "ats_jobs", None, now, now, 3, *[None] * 8)]
        assert add_normalized(conn, schemas, runs)
        assert (runs[0].records, runs[0].records_changed, runs[0].changed_seq, runs[0].table_changes) == (
            3,
            1,
            None,
            None,
        )
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schemas.target} CASCADE")
