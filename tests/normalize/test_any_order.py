"""Property: any set of completed runs, normalized in any order, gives the tables a reference model predicts.

Hypothesis generates run histories (new, modified, deleted, revived, redelivered duplicates, events
of an older run landing late among a newer run's, deletions with Knit's empty ids, initial syncs
that are snapshots) and lands them through ``land_events``. The model below is written from the
rules, in plain Python, independently of the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from normalize_landing import DATA_TABLES, Lander, application, dump

from knit_provider.landing.migrate import migrate
from knit_provider.normalize import normalize_runs
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas, quote_ident

APPS = ["a0", "a1", "a2"]
STAGES = ["s0", "s1", "s2"]
CANDIDATES = ["c0", "c1"]
RUNS = 3
LANDING = "prop_landing"
TARGETS = [f"prop_t{n}" for n in range(4)]


@dataclass(frozen=True)
class Event:
    run: int
    kind: str  # record.new / record.modified / record.deleted
    app: str
    stage: str | None
    candidate: str
    day: int | None  # info.updatedAt day of January 2024, or missing
    name: str
    redeliver: bool  # land the same eventId once more, later
    late: bool  # land after every other event: an older run's event arriving during newer runs
    # A deletion's ids: "full"; "empty" as on Knit's page (recordId still names it); "no_record_id"
    # (recordId "", the id in eventData).
    ids: str


events_strategy = st.lists(
    st.builds(
        Event,
        run=st.integers(0, RUNS - 1),
        kind=st.sampled_from(["record.new", "record.modified", "record.deleted"]),
        app=st.sampled_from(APPS),
        stage=st.one_of(st.none(), st.sampled_from(STAGES)),
        candidate=st.sampled_from(CANDIDATES),
        day=st.one_of(st.none(), st.integers(1, 28)),
        name=st.sampled_from(["Ada", "Grace", "Alan"]),
        redeliver=st.booleans(),
        late=st.booleans(),
        ids=st.sampled_from(["full", "empty", "no_record_id"]),
    ),
    min_size=1,
    max_size=16,
)
# Which runs are initial syncs, each as likely as not (a snapshot run may have no record at all).
snapshots_strategy = st.lists(st.booleans(), min_size=RUNS, max_size=RUNS).map(
    lambda flags: {n for n, flag in enumerate(flags) if flag}
)


def run_start(run: int) -> datetime:
    return datetime(2023, 12, 1 + run, tzinfo=timezone.utc)


def carries_ids(event: Event) -> bool:
    return event.kind == "record.deleted" and event.ids != "empty"


def deletion_ids(event: Event) -> tuple[str, str]:
    """The candidate and job ids a deletion carries: distinct per run, so which deletion won shows."""
    return f"{event.candidate}-r{event.run}", f"job-r{event.run}"


def payload(event: Event) -> dict[str, Any]:
    if event.kind == "record.deleted":
        if event.ids == "empty":
            return {"applicationId": "", "candidateId": "", "jobId": ""}
        candidate, job = deletion_ids(event)
        return {"applicationId": event.app, "candidateId": candidate, "jobId": job}
    data = application(
        event.app,
        stage=event.stage,
        candidate=event.candidate,
        updated_at=None if event.day is None else f"2024-01-{event.day:02d}T00:00:00Z",
    )
    data["info"]["candidate"]["firstName"] = event.name
    return data


# ---- the reference model ---------------------------------------------------------------------
@dataclass
class History:
    """What was landed: each record event with its version, and each run's number, kind and place."""

    landed: list[dict[str, Any]]
    run_ids: list[str]
    number: dict[str, int]  # run id -> run number (its start day)
    first_seq: dict[str, int]
    snapshots: set[str]  # run ids of the initial syncs


def applied_snapshots(history: History, runs: set[str]) -> list[tuple[int, str]]:
    """(first_seq, run id) of the snapshots that apply when ``runs`` are normalized, earliest first.

    Every new/modified event carries all six models and a deletion none, so a snapshot carries every
    model earlier runs carried unless it has no new/modified while an earlier normalized run has one.
    Each run reconciles (its counts are what landed) and no body is in the dead letters.
    """
    alive_runs = {e["run_id"] for e in history.landed if e["run_id"] in runs and e["event"].kind != "record.deleted"}
    applied = []
    for run_id in history.snapshots & runs:
        earlier_alive = any(history.first_seq[r] < history.first_seq[run_id] for r in alive_runs)
        if run_id in alive_runs or not earlier_alive:
            applied.append((history.first_seq[run_id], run_id))
    return sorted(applied)


def model(history: History, runs: set[str]) -> dict[str, Any]:
    """Expected table contents after normalizing ``runs``."""
    mine = sorted((e for e in history.landed if e["run_id"] in runs), key=lambda e: e["version"])
    snapshots = applied_snapshots(history, runs)
    apps: dict[str, dict[str, Any]] = {}
    candidates: dict[str, tuple[Any, ...]] = {}
    observations: dict[str, list[tuple[str, datetime]]] = {}
    for e in mine:  # ascending version: the last one written is the highest
        ev: Event = e["event"]
        row = apps.setdefault(ev.app, {"data": None, "top": None, "ids": None})
        row["top"] = e
        if carries_ids(ev):
            row["ids"] = ev
        if ev.kind != "record.deleted":
            row["data"] = e
            candidates[ev.candidate] = (ev.name, ev.app, e["event_id"])
            if ev.stage is not None:
                observations.setdefault(ev.app, []).append((ev.stage, e["observed_at"]))
    expected_apps = {}
    for app_id, row in apps.items():
        top, data, ids = row["top"], row["data"], row["ids"]
        deleted = top["event"].kind == "record.deleted"
        deleted_at = run_start(top["run"]) if deleted else None
        # Alive at its latest event, but a later snapshot did not contain it: deleted as of the earliest.
        absent_from = [run_id for first_seq, run_id in snapshots if first_seq > top["version"][0]]
        snapshot = absent_from[0] if absent_from and not deleted else None
        if snapshot:
            deleted, deleted_at = True, run_start(history.number[snapshot])
        if data:
            candidate, job = data["event"].candidate, "job-1"
        else:  # never seen alive: the ids of the highest deletion that carries them, else none
            candidate, job = deletion_ids(ids) if ids else (None, None)
        expected_apps[app_id] = (
            deleted,
            deleted_at,
            top["event_id"],
            data["event_id"] if data else None,
            candidate,
            job,
            data["event"].stage if data else None,
            snapshot,
        )
    history = {}
    for app_id, seen in observations.items():
        collapsed = [s for k, s in enumerate(seen) if k == 0 or seen[k - 1][0] != s[0]]
        history[app_id] = [
            (stage, at, collapsed[k + 1][1] if k + 1 < len(collapsed) else None)
            for k, (stage, at) in enumerate(collapsed)
        ]
    return {"apps": expected_apps, "candidates": candidates, "history": history}


def actual(conn: Any, schemas: Schemas) -> dict[str, Any]:
    t = quote_ident(schemas.target)
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT application_id, is_deleted, deleted_at, version_event_id, data_event_id, candidate_id, "
            f"job_id, current_stage_id, snapshot_run_id FROM {t}.ats_applications"
        )
        apps = {r[0]: r[1:] for r in cur.fetchall()}
        cur.execute(f"SELECT candidate_id, first_name, application_id, version_event_id FROM {t}.ats_candidates")
        candidates = {r[0]: r[1:] for r in cur.fetchall()}
        cur.execute(
            f"SELECT application_id, stage_id, entered_at, left_at FROM {t}.ats_application_stage_history "
            "ORDER BY application_id, position"
        )
        history: dict[str, list[tuple[Any, ...]]] = {}
        for app_id, *rest in cur.fetchall():
            history.setdefault(app_id, []).append(tuple(rest))
    return {"apps": apps, "candidates": candidates, "history": history}


# ---- the test --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prop_schemas(conn: Any) -> list[Schemas]:
    pairs = [Schemas(landing=LANDING, target=t) for t in TARGETS]
    migrate(conn, pairs[0])
    for pair in pairs:
        ensure_schema(conn, pair)
    return pairs


def reset(conn: Any, pairs: list[Schemas]) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {LANDING}.events, {LANDING}.sync_runs RESTART IDENTITY")
        for pair in pairs:
            tables = [*DATA_TABLES, "normalized_runs"]
            cur.execute("TRUNCATE " + ", ".join(f"{quote_ident(pair.target)}.{name}" for name in tables))


def land(conn: Any, pairs: list[Schemas], events: list[Event], snapshots: set[int]) -> History:
    """Land the history (redeliveries at the end, as late duplicates); return events with their versions."""
    lander = Lander(conn, pairs[0])
    runs = {
        n: lander.initial(f"run-{n}") if n in snapshots else lander.run(f"run-{n}")
        for n in sorted({e.run for e in events} | snapshots)
    }
    sent = []
    for event in sorted(events, key=lambda e: e.late):  # stable: late ones last, in their own order
        record_id = "" if event.kind == "record.deleted" and event.ids == "no_record_id" else None
        event_id = runs[event.run].record(event.kind, event.app, data=payload(event), record_id=record_id)
        sent.append((event, event_id, record_id))
    for event, event_id, record_id in sent:
        if event.redeliver:
            runs[event.run].record(event.kind, event.app, data=payload(event), event_id=event_id, record_id=record_id)
    for n, run in runs.items():
        run.complete(started_ms=int(run_start(n).timestamp() * 1000))
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT e.event_id, e.seq, r.first_seq FROM {LANDING}.events e "
            f"JOIN {LANDING}.sync_runs r USING (sync_run_id)"
        )
        versions = {event_id: (first_seq, seq) for event_id, seq, first_seq in cur.fetchall()}
        cur.execute(f"SELECT sync_run_id, first_seq FROM {LANDING}.sync_runs")
        first_seq = dict(cur.fetchall())
    landed = [
        {
            "event": event,
            "event_id": event_id,
            "run": event.run,
            "run_id": runs[event.run].run_id,
            "version": versions[event_id],
            "observed_at": (datetime(2024, 1, event.day, tzinfo=timezone.utc) if event.day else run_start(event.run)),
        }
        for event, event_id, _ in sent
    ]
    return History(
        landed=landed,
        run_ids=[run.run_id for run in runs.values()],
        number={run.run_id: n for n, run in runs.items()},
        first_seq=first_seq,
        snapshots={runs[n].run_id for n in snapshots},
    )


# A fresh sample of 40 on every run, CI included (the profile in tests/conftest.py says why).
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events_strategy, snapshots=snapshots_strategy, data=st.data())
def test_any_order_any_subset_matches_the_model(
    conn: Any, prop_schemas: list[Schemas], events: list[Event], snapshots: set[int], data: st.DataObject
) -> None:
    reset(conn, prop_schemas)
    history = land(conn, prop_schemas, events, snapshots)
    run_ids = history.run_ids

    dumps = []
    for pair in prop_schemas[:3]:
        order = data.draw(st.permutations(run_ids), label=f"order into {pair.target}")
        normalize_runs(conn, order, pair)
        dumps.append(dump(conn, pair))
    assert dumps[1] == dumps[0]
    assert dumps[2] == dumps[0]
    assert actual(conn, prop_schemas[0]) == model(history, set(run_ids))

    # A subset first must match the model of that subset; the rest, and repeats, then the whole.
    pair = prop_schemas[3]
    subset = data.draw(st.lists(st.sampled_from(run_ids), unique=True), label="subset first")
    normalize_runs(conn, subset, pair)
    assert actual(conn, pair) == model(history, set(subset))
    rest = [r for r in run_ids if r not in subset]
    normalize_runs(conn, rest + subset, pair)
    assert dump(conn, pair) == dumps[0]
