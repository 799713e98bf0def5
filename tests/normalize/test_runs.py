"""Which runs are normalized, refusals, reconciliation, and two normalizations at once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import psycopg2
import pytest
from normalize_landing import Lander, dump, rows

from knit_provider.normalize import (
    ReconciliationError,
    RunNotCompleteError,
    RunNotFoundError,
    normalize_runs,
    pending_runs,
    reconcile_run,
    runs_completed_between,
)
from knit_provider.normalize.reconcile import check
from knit_provider.normalize.runs import WrongDataTypeError
from knit_provider.settings import Schemas


def test_an_incomplete_run_is_refused_unless_forced_and_then_stays_pending(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1 = lander.run()
    r1.new("a1")
    with pytest.raises(RunNotCompleteError, match=r"emitted: 0 has landed \(1 record events so far\).*force"):
        normalize_runs(conn, [r1.run_id], schemas)
    assert rows(conn, schemas, "SELECT * FROM {l}.sync_runs WHERE normalized_at IS NOT NULL") == []

    (forced,) = normalize_runs(conn, [r1.run_id], schemas, force=True)
    assert (forced.complete, forced.applications) == (False, 1)
    assert [r["complete"] for r in rows(conn, schemas, "SELECT * FROM {t}.normalized_runs")] == [False]
    assert pending_runs(conn, schemas) == []  # not complete yet: nothing pending

    r1.new("a2")
    r1.complete()
    assert pending_runs(conn, schemas) == [r1.run_id]  # forcing did not mark it normalized
    (done,) = normalize_runs(conn, pending_runs(conn, schemas), schemas, only_if_pending=True)
    assert (done.complete, done.applications) == (True, 2)
    assert pending_runs(conn, schemas) == []


def test_unknown_run_and_other_data_types_are_refused(conn: Any, schemas: Schemas, lander: Lander) -> None:
    with pytest.raises(RunNotFoundError, match="no landed events"):
        normalize_runs(conn, ["sr-never"], schemas)
    # A data type Knit has and the provider has no spec for.
    candidates = lander.run()
    env = candidates.envelope("record.new", {"info": {"id": "c1"}}, "c1")
    env["syncDataType"] = "ats_candidates"
    lander.land([env], "int-1")
    with pytest.raises(WrongDataTypeError, match="ats_candidates"):
        normalize_runs(conn, [candidates.run_id], schemas, force=True)


def test_pending_runs_oldest_first_and_runs_completed_in_an_interval(
    conn: Any, schemas: Schemas, lander: Lander
) -> None:
    r1, r2, r3 = lander.run(), lander.run(integration_id="int-2"), lander.run()
    for run in (r1, r2, r3):
        run.new(f"a-{run.run_id}")
    r3.complete()
    r1.complete()
    assert pending_runs(conn, schemas) == [r1.run_id, r3.run_id]  # by place in time, not completion
    assert pending_runs(conn, schemas, ["int-2"]) == []
    r2.complete()
    assert pending_runs(conn, schemas, ["int-2"]) == [r2.run_id]

    (done,) = rows(conn, schemas, "SELECT min(complete_at) AS first, max(complete_at) AS last FROM {l}.sync_runs")
    tick = timedelta(microseconds=1)
    assert runs_completed_between(conn, schemas, done["first"], done["last"] + tick) == [
        r1.run_id,
        r2.run_id,
        r3.run_id,
    ]
    assert runs_completed_between(conn, schemas, done["first"] + tick, done["last"]) == [r1.run_id]
    assert runs_completed_between(conn, schemas, done["last"] + tick, done["last"] + timedelta(days=1)) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        runs_completed_between(conn, schemas, datetime(2025, 1, 1), datetime(2025, 1, 2))


def test_reconciliation_compares_landed_events_with_knits_counts(conn: Any, schemas: Schemas, lander: Lander) -> None:
    ok, short = lander.run(), lander.run()
    ok.new("a1")
    ok.deleted("a2")
    ok.complete()
    short.new("b1")
    short.new("b2")
    short.complete(emitted=5, consumed=4)

    good = check(reconcile_run(conn, ok.run_id, schemas))
    assert (good.landed, good.emitted, good.consumed, good.ok) == (2, 2, 2, True)

    missing = reconcile_run(conn, short.run_id, schemas)
    assert (missing.landed, missing.expected, missing.shortfall) == (2, 5, 3)
    with pytest.raises(ReconciliationError, match="2 distinct record events landed, but Knit emitted 5 and saw 4"):
        check(missing)

    unreported = lander.run()
    unreported.new("c1")
    assert reconcile_run(conn, unreported.run_id, schemas).ok  # nothing to compare with yet


def test_two_normalizations_of_one_integration_at_once_equal_one_after_the_other(
    conn: Any, schemas: Schemas, lander: Lander, pg_url: str
) -> None:
    runs = [lander.run() for _ in range(4)]
    for k, run in enumerate(runs):
        for a in range(30):
            run.modified(f"a{a}", stage=f"s{(a + k) % 3}", updated_at=f"2024-01-0{k + 1}T00:00:00Z")
        run.deleted(f"a{k}")
        run.complete()
    ids = [r.run_id for r in runs]
    normalize_runs(conn, [], schemas)  # create the schema once, outside the race
    errors: list[BaseException] = []

    def worker(order: list[str]) -> None:
        own = psycopg2.connect(pg_url)
        try:
            normalize_runs(own, order, schemas)
        except BaseException as e:
            errors.append(e)
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(order,)) for order in (ids, ids[::-1], ids[1::2] + ids[::2])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    sequential = Schemas(landing=schemas.landing, target=schemas.target + "_seq")
    normalize_runs(conn, ids, sequential)
    assert dump(conn, schemas) == dump(conn, sequential)
