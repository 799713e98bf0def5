"""The integration registry: kept by ``land_events`` in any order and idempotently, back-filled by 0004,
announced once to the onboarding watcher, claimed once per initial sync, and steered by the CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import select
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg2
import psycopg2.extensions
import pytest
from knit_landing_helpers import land_as_release, store_at_version

from knit_provider.__main__ import main
from knit_provider.landing.integrations import (
    IntegrationNotFoundError,
    aclaim_activations,
    active_integration_ids,
    claim_onboarding,
    finish_onboarding,
    list_integrations,
    set_disabled,
)
from knit_provider.landing.migrate import MIGRATIONS, migrate
from knit_provider.settings import NOTIFY_CHANNEL, ONBOARDING_ADOPT_MARGIN, Schemas

SCHEMAS = Schemas()
_ids = itertools.count()
# What the registry keeps from the events, whatever the order they landed in (times of arrival differ).
STABLE = ("integration_id", "state", "activation_event_id", "activated_at", "validation_errors", "last_sync_run_id")


def activation(integration: str, at_ms: int, errors: Any = None, event_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"integrationId": integration, "activatedAt": str(at_ms)}
    if errors is not None:
        data["errors"] = errors
    return {"eventId": event_id or f"act-{next(_ids)}", "eventType": "app.integration.activate", "eventData": data}


def run_event(run: str, event_type: str = "record.new", **data: Any) -> dict[str, Any]:
    return {
        "eventId": f"ev-{next(_ids)}",
        "eventType": event_type,
        "eventData": data,
        "syncType": "initial_sync",
        "syncDataType": "ats_applications",
        "syncJobId": "sj-" + run,
        "syncRunId": run,
        "recordId": "r1",
    }


def land(conn: Any, events: list[dict[str, Any]], integration: str | None = "int-1") -> int:
    """One batch through land_events, as the receiver sends it (the header's integration id on every event)."""
    args = [
        [e["eventId"] for e in events],
        [e["eventType"] for e in events],
        *([e.get(key) for e in events] for key in ("syncType", "syncDataType", "syncJobId", "syncRunId", "recordId")),
        [integration] * len(events),
        [json.dumps(e) for e in events],
    ]
    with conn, conn.cursor() as cur:
        cur.execute("SELECT knit_landing.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[])", args)
        return int(cur.fetchone()[0])


def registry(conn: Any, *ids: str) -> dict[str, dict[str, Any]]:
    with conn, conn.cursor() as cur:
        rows = list_integrations(cur, SCHEMAS, ids=list(ids) or None)
    return {row.integration_id: row.as_dict() for row in rows}


def stable(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[name] for name in STABLE)


@pytest.fixture
def conn(landing_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(landing_url)
    with connection, connection.cursor() as cur:
        cur.execute("TRUNCATE knit_landing.integrations, knit_landing.sync_runs, knit_landing.event_ids")
    yield connection
    connection.close()


def test_activations_and_runs_fill_the_registry_with_a_state_each(conn: Any) -> None:
    land(conn, [activation("int-ok", 1_700_000_000_000)], "int-ok")
    errors = [{"code": "INVALID_CREDENTIALS", "msg": "token expired"}]
    land(conn, [activation("int-bad", 1_700_000_000_000, errors)], "int-bad")
    land(conn, [run_event("r1"), run_event("r1", "sync.events.processed", processed=1)], "int-runs")
    land(conn, [activation("int-empty", 1_700_000_000_000, [])], "int-empty")
    rows = registry(conn)
    assert {i: r["state"] for i, r in rows.items()} == {
        "int-ok": "active",
        "int-bad": "failed_validation",
        "int-runs": "seen_only_through_syncs",
        "int-empty": "active",  # an empty errors list is no error
    }
    assert rows["int-bad"]["validation_errors"] == errors
    assert rows["int-ok"]["validation_errors"] is None
    assert rows["int-ok"]["activated_at"].startswith("2023-11-14T22:13:20")
    assert rows["int-runs"]["last_sync_run_id"] == "r1"
    assert rows["int-runs"]["last_event_type"] == "sync.events.processed"
    assert rows["int-runs"]["first_seen_at"] <= rows["int-runs"]["last_event_at"]


def test_an_activation_without_the_header_is_filed_under_its_event_data(conn: Any) -> None:
    land(conn, [activation("int-body", 1_700_000_000_000)], None)
    assert registry(conn)["int-body"]["state"] == "active"


def test_any_order_and_any_batching_give_the_same_registry(conn: Any, landing_url: str) -> None:
    """The newest activation wins by Knit's time, the last run by when it started, whatever lands when."""
    errors = [{"msg": "missing scope"}]
    old_bad = activation("int-x", 1_700_000_000_000, errors, "act-old")
    new_ok = activation("int-x", 1_700_000_100_000, None, "act-new")
    run_a = [run_event("run-a"), run_event("run-a", "sync.events.allConsumed", consumed="1")]
    run_b = [run_event("run-b")]
    late_a = [run_event("run-a")]  # a redelivery of the older run, landing last
    batches = [[old_bad], [new_ok], run_a, run_b]
    results = set()
    for order in itertools.permutations(range(len(batches))):
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE knit_landing.integrations, knit_landing.sync_runs, knit_landing.event_ids")
        for index in order:  # event_ids was emptied: the same ids land again
            land(conn, batches[index], "int-x")
        land(conn, late_a, "int-x")
        (row,) = registry(conn).values()
        # run-b started after run-a only when its first event landed later: compare with sync_runs.
        with conn, conn.cursor() as cur:
            cur.execute("SELECT sync_run_id FROM knit_landing.sync_runs ORDER BY first_seq DESC LIMIT 1")
            assert row["last_sync_run_id"] == cur.fetchone()[0], order
        results.add(stable(row)[:5])
    assert results == {("int-x", "active", "act-new", "2023-11-14T22:15:00+00:00", None)}

    # One batch holding everything, and the same events again: the same row, nothing counted twice.
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE knit_landing.integrations, knit_landing.sync_runs, knit_landing.event_ids")
    everything = [old_bad, *run_a, new_ok, *run_b]
    assert land(conn, everything, "int-x") == len(everything)
    once = registry(conn)["int-x"]
    assert land(conn, everything, "int-x") == 0
    assert land(conn, [old_bad], "int-x") == 0
    assert registry(conn)["int-x"] == once
    assert stable(once)[:5] == ("int-x", "active", "act-new", "2023-11-14T22:15:00+00:00", None)


def test_an_older_activation_landing_late_changes_nothing_and_a_newer_one_replaces(conn: Any) -> None:
    land(conn, [activation("int-y", 2_000, None, "act-2")], "int-y")
    land(conn, [activation("int-y", 1_000, [{"msg": "old"}], "act-1")], "int-y")
    assert stable(registry(conn)["int-y"])[:3] == ("int-y", "active", "act-2")
    land(conn, [activation("int-y", 3_000, [{"msg": "revoked"}], "act-3")], "int-y")
    row = registry(conn)["int-y"]
    assert (row["state"], row["activation_event_id"], row["validation_errors"]) == (
        "failed_validation",
        "act-3",
        [{"msg": "revoked"}],
    )


def test_disabled_stays_disabled_until_enabled(conn: Any) -> None:
    land(conn, [activation("int-d", 1_000)], "int-d")
    with conn, conn.cursor() as cur:
        (row,) = set_disabled(cur, SCHEMAS, ["int-d"], disabled=True)
    assert row.state == "disabled"
    land(conn, [activation("int-d", 2_000)], "int-d")
    land(conn, [run_event("r-d")], "int-d")
    row_after = registry(conn)["int-d"]
    assert row_after["state"] == "disabled"
    assert row_after["disabled_at"] == row.disabled_at.isoformat(), "disabling again keeps the first time"
    with conn, conn.cursor() as cur:
        (enabled,) = set_disabled(cur, SCHEMAS, ["int-d"], disabled=False)
    assert (enabled.state, enabled.activated_at.timestamp()) == ("active", 2.0)
    with pytest.raises(IntegrationNotFoundError, match="'int-nope'"), conn, conn.cursor() as cur:
        set_disabled(cur, SCHEMAS, ["int-d", "int-nope"], disabled=True)
    assert registry(conn)["int-d"]["state"] == "active", "all or none"


def test_an_activation_is_announced_on_the_channel(conn: Any, landing_url: str) -> None:
    listener = psycopg2.connect(landing_url)
    listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    try:
        with listener.cursor() as cur:
            cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
        land(conn, [activation("int-n", 1_000)], "int-n")
        assert select.select([listener], [], [], 5) != ([], [], [])
        listener.poll()
        payloads = [json.loads(n.payload) for n in listener.notifies]
        assert [p["event_type"] for p in payloads] == ["app.integration.activate"]
    finally:
        listener.close()


def test_the_watcher_announces_each_newest_activation_once(conn: Any, landing_url: str) -> None:
    async def claim_all() -> list[tuple[str, str]]:
        connection = await asyncpg.connect(landing_url)
        try:
            claimed = await aclaim_activations(connection, SCHEMAS, limit=100)
        finally:
            await connection.close()
        return [(row["integration_id"], row["activation_event_id"]) for row in claimed]

    land(conn, [activation("int-a", 1_000, None, "a-1")], "int-a")
    land(conn, [activation("int-b", 2_000, [{"msg": "bad"}], "b-1")], "int-b")
    land(conn, [activation("int-c", 3_000, None, "c-1")], "int-c")
    land(conn, [run_event("r-s")], "int-seen")
    with conn, conn.cursor() as cur:
        set_disabled(cur, SCHEMAS, ["int-c"], disabled=True)
    assert asyncio.run(claim_all()) == [("int-a", "a-1"), ("int-b", "b-1")], "oldest first; not disabled ones"
    assert asyncio.run(claim_all()) == []
    land(conn, [activation("int-a", 500, None, "a-0")], "int-a")  # older, landing late: nothing new
    land(conn, [activation("int-b", 4_000, None, "b-2")], "int-b")  # newer: announced again
    assert asyncio.run(claim_all()) == [("int-b", "b-2")]
    with conn, conn.cursor() as cur:
        set_disabled(cur, SCHEMAS, ["int-c"], disabled=False)
    assert asyncio.run(claim_all()) == [("int-c", "c-1")], "enabled: its activation is announced then"


def test_one_onboarding_claim_at_a_time_then_onboarded_or_released(conn: Any) -> None:
    for name in ("int-1", "int-2", "int-3", "int-off"):
        land(conn, [activation(name, 1_000)], name)
    land(conn, [activation("int-bad", 1_000, ["bad"])], "int-bad")
    land(conn, [run_event("r-seen")], "int-seen")
    day = 86_400.0
    with conn, conn.cursor() as cur:
        first = claim_onboarding(cur, SCHEMAS, ["int-1", "int-2", "int-bad"], dag_run_id="run-1", stale_after=day)
        second = claim_onboarding(cur, SCHEMAS, ["int-1", "int-2", "int-3"], dag_run_id="run-2", stale_after=day)
        set_disabled(cur, SCHEMAS, ["int-off"], disabled=True)
        active = active_integration_ids(cur, SCHEMAS, stale_after=day)
    assert first == ["int-1", "int-2"], "a failed validation is never claimed"
    assert second == ["int-3"], "an integration being onboarded is not claimed by a second DAG run"
    # The main DAG leaves integrations out while their initial sync runs, and disabled or failed ones;
    # one known only from its syncs is a working customer: it stays in.
    assert active == ["int-seen"]

    # run-1's initial sync of int-1 reconciled; int-2's did not: int-2 is released, int-1 onboarded.
    land(conn, [run_event("init-1")], "int-1")
    with conn, conn.cursor() as cur:
        outcome = finish_onboarding(cur, SCHEMAS, dag_run_id="run-1", sync_run_ids=["init-1"])
        again = claim_onboarding(cur, SCHEMAS, ["int-1", "int-2"], dag_run_id="run-3", stale_after=day)
        active = active_integration_ids(cur, SCHEMAS, stale_after=day)
    assert outcome == {"onboarded": ["int-1"], "released": ["int-2"]}
    assert again == ["int-2"], "onboarded once; a released claim can be taken again"
    assert active == ["int-1", "int-seen"]
    row = registry(conn)["int-1"]
    assert (row["onboarding_sync_run_id"], row["onboarding_dag_run_id"]) == ("init-1", "run-1")
    # A claim whose DAG run died without finishing expires.
    with conn, conn.cursor() as cur:
        stolen = claim_onboarding(cur, SCHEMAS, ["int-3"], dag_run_id="run-4", stale_after=0.0)
    assert stolen == ["int-3"]
    # Synced to completion well before its activation (by the main DAG): nothing to onboard.
    now_ms = int(time.time() * 1000)
    margin_ms = int(ONBOARDING_ADOPT_MARGIN.total_seconds() * 1000)
    land(conn, [run_event("main-1"), run_event("main-1", "sync.events.allConsumed", consumed="1")], "int-4")
    land(conn, [activation("int-4", now_ms + margin_ms + 60_000)], "int-4")
    # Knit's own initial sync on connection: complete already, and its events overtook the activation by a
    # little. Onboarding claims it, to adopt that run rather than start a second one.
    land(conn, [run_event("knit-1"), run_event("knit-1", "sync.events.allConsumed", consumed="1")], "int-5")
    land(conn, [activation("int-5", now_ms + 30_000)], "int-5")
    with conn, conn.cursor() as cur:
        assert claim_onboarding(cur, SCHEMAS, ["int-4"], dag_run_id="run-5", stale_after=day) == []
        assert claim_onboarding(cur, SCHEMAS, ["int-5"], dag_run_id="run-5", stale_after=day) == ["int-5"]


def test_cli_lists_disables_and_enables(conn: Any, landing_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    def cli(*args: str) -> int:
        return main(["--database-url", landing_url, "integrations", *args])

    assert cli("list") == 0
    assert "no integrations" in capsys.readouterr().out
    land(conn, [activation("int-ok", 1_700_000_000_000)], "int-ok")
    land(conn, [activation("int-bad", 1_700_000_000_000, [{"msg": "token expired"}])], "int-bad")
    assert cli("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["INTEGRATION", "STATE"]
    assert [line.split()[:2] for line in lines[1:]] == [["int-bad", "failed_validation"], ["int-ok", "active"]]
    assert '[{"msg":"token expired"}]' in lines[1]

    assert cli("disable", "int-ok") == 0
    assert capsys.readouterr().out == "int-ok: disabled\n"
    assert cli("list", "--state", "disabled", "--json") == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["integration_id"], listed["state"]) == ("int-ok", "disabled")
    assert cli("enable", "int-ok") == 0
    assert capsys.readouterr().out == "int-ok: active\n"

    assert cli("disable", "int-missing") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no integration 'int-missing' in knit_landing.integrations")
    with pytest.raises(SystemExit):
        cli("list", "--state", "sleeping")
    assert "invalid choice: 'sleeping'" in capsys.readouterr().err
    assert main(["--conn-id", "knit_landing_nowhere", "integrations", "list"]) == 2
    assert "the Airflow connection 'knit_landing_nowhere' is not defined" in capsys.readouterr().err


def test_0004_back_fills_a_populated_store(pg_url: str) -> None:
    """Runs and activations stored before the registry: one row each, old activations count as announced."""
    schemas = Schemas(landing="registry_v3")
    landing = schemas.landing
    conn = psycopg2.connect(pg_url)
    try:
        with conn, conn.cursor() as cur:
            store_at_version(cur, schemas, 3)
            for integration, events in (
                ("int-old", [run_event("old-1"), run_event("old-2")]),
                ("int-old", [activation("int-old", 5_000, None, "o-2"), activation("int-old", 1_000, ["x"], "o-1")]),
                ("int-bad", [activation("int-bad", 1_000, [{"msg": "no"}], "b-1")]),
                ("int-runs", [run_event("runs-1")]),
            ):
                land_as_release(cur, schemas, 3, events, integration)
        assert migrate(conn, schemas) == list(MIGRATIONS[3:])
        with conn, conn.cursor() as cur:
            rows = {row.integration_id: row for row in list_integrations(cur, schemas)}
            cur.execute(
                f"SELECT count(*) FROM {landing}.integrations WHERE announced_seq IS DISTINCT FROM activation_seq"
            )
            unannounced = cur.fetchone()[0]
    finally:
        conn.close()
    assert {i: (r.state, r.activation_event_id, r.last_sync_run_id) for i, r in rows.items()} == {
        "int-old": ("active", "o-2", "old-2"),
        "int-bad": ("failed_validation", "b-1", None),
        "int-runs": ("seen_only_through_syncs", None, "runs-1"),
    }
    assert rows["int-bad"].validation_errors == [{"msg": "no"}]
    assert unannounced == 0, "activations from before the registry do not start initial syncs"


def test_an_integration_is_onboarded_only_when_the_initial_sync_of_every_type_reconciled(conn: Any) -> None:
    for name in ("int-both", "int-half"):
        land(conn, [activation(name, 1_000)], name)
    jobs = {"syncDataType": "ats_jobs"}
    land(conn, [run_event("both-apps"), {**run_event("both-jobs"), **jobs}], "int-both")
    land(conn, [run_event("half-apps"), {**run_event("half-jobs"), **jobs}], "int-half")
    types = ["ats_applications", "ats_jobs"]
    with conn, conn.cursor() as cur:
        claimed = claim_onboarding(cur, SCHEMAS, ["int-both", "int-half"], dag_run_id="run-t", stale_after=86_400.0)
        # int-half's jobs sync did not reconcile: its applications run alone does not onboard it.
        outcome = finish_onboarding(
            cur, SCHEMAS, dag_run_id="run-t", sync_run_ids=["both-jobs", "both-apps", "half-apps"], data_types=types
        )
    assert claimed == ["int-both", "int-half"]
    assert outcome == {"onboarded": ["int-both"], "released": ["int-half"]}
    assert registry(conn)["int-both"]["onboarding_sync_run_id"] == "both-apps", "the first type's run is its own"
