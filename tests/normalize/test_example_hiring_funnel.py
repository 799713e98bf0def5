"""The example DAG's summary (dags/knit_example_hiring_funnel.py), kept from the change feed, equals a full
recomputation after every normalization, whatever the order runs are normalized in, repeats and a backfill
included; a refresh with nothing new reads nothing, and a refresh that fails leaves everything as it was."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import psycopg2
import pytest
from normalize_landing import Lander, Run

from knit_provider.normalize import normalize_runs
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "knit_example_hiring_funnel.py"
START_MS = 1_700_000_000_000
HOUR_MS = 3_600_000
TABLES = ("hiring_funnel", "hiring_funnel_applications", "hiring_funnel_watermark")


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """The DAG file as a module, loaded from its path as Airflow's DAG processor does."""
    spec = importlib.util.spec_from_file_location("knit_example_hiring_funnel", DAG_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key(row: tuple[Any, ...]) -> tuple[str, ...]:
    """Rows with NULLs sort by their text."""
    return tuple("" if value is None else str(value) for value in row)


def recomputed(conn: Any, schemas: Schemas) -> list[tuple[Any, ...]]:
    """The summary computed from scratch: live applications per integration, applied day, stage and status."""
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT integration_id, (applied_at AT TIME ZONE 'UTC')::date, current_stage_name, status, count(*)"
            f" FROM {schemas.target}.ats_applications WHERE NOT is_deleted GROUP BY 1, 2, 3, 4"
        )
        return sorted(cur.fetchall(), key=_key)


def table(conn: Any, examples: str, name: str) -> list[tuple[Any, ...]]:
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {examples}.{name}")
        return sorted(cur.fetchall(), key=_key)


def summary(conn: Any, examples: str) -> list[tuple[Any, ...]]:
    return table(conn, examples, "hiring_funnel")


def history(lander: Lander) -> dict[str, Run]:
    """Runs of two integrations: new applications (NULL stage, status and applied day among them), deltas that
    move stage, status and applied day, a record.deleted, and a later initial sync (a snapshot) that deletes."""
    r1 = lander.initial(integration_id="int-1")
    r1.new("a1", stage="s1")
    r1.new("a2", stage="s1", appliedAt="2024-01-03T10:00:00Z")
    r1.new("a3", stage=None)
    r1.new("a4", stage="s2", appliedAt=None)
    r1.new("a5", stage="s2", status=None)
    r1.complete(started_ms=START_MS)

    r2 = lander.run(integration_id="int-1")
    r2.modified("a1", stage="s2")
    r2.modified("a2", stage="s1", status="REJECTED", appliedAt="2024-01-03T10:00:00Z")
    r2.deleted("a3")
    r2.complete(started_ms=START_MS + HOUR_MS)

    b1 = lander.initial(integration_id="int-2")
    b1.new("a1", stage="s1")  # the same application id as int-1's: another integration's application
    b1.new("b2", stage="s1")
    b1.complete(started_ms=START_MS + 2 * HOUR_MS)

    r3 = lander.run(integration_id="int-1")
    r3.modified("a1", stage="s2", appliedAt="2024-02-01T23:30:00-05:00")  # 2024-02-02 in UTC
    r3.new("a6", stage="s3")
    r3.complete(started_ms=START_MS + 3 * HOUR_MS)

    snapshot = lander.initial(integration_id="int-1")  # a4 and a5 absent: deleted as of it
    snapshot.new("a1", stage="s3", appliedAt="2024-02-01T23:30:00-05:00")
    snapshot.new("a2", stage="s1", status="REJECTED", appliedAt="2024-01-03T10:00:00Z")
    snapshot.new("a6", stage="s3")
    snapshot.complete(started_ms=START_MS + 4 * HOUR_MS)

    b2 = lander.run(integration_id="int-2")
    b2.modified("b2", stage=None, status=None)
    b2.deleted("a1")
    b2.complete(started_ms=START_MS + 5 * HOUR_MS)
    return {"r1": r1, "r2": r2, "b1": b1, "r3": r3, "snapshot": snapshot, "b2": b2}


# Each step is one normalization call (several runs, of both integrations, in some); the last step of each
# order normalizes every run again, as a backfill does.
EVERY_RUN = ["r1", "r2", "b1", "r3", "snapshot", "b2"]
ORDERS = {
    "as_completed": [["r1"], ["r2"], ["b1"], ["r3"], ["snapshot"], ["b2"], ["r2"], EVERY_RUN],
    "late_and_mixed": [["snapshot"], ["b1", "r1"], ["b2"], ["r3", "r2"], ["r3"], ["r1"], EVERY_RUN[::-1]],
    "deletions_first": [["b2"], ["r2"], ["snapshot", "b1"], ["r1"], ["r3"], ["b1"], EVERY_RUN],
}


@pytest.mark.parametrize("order", ORDERS)
def test_summary_equals_a_full_recomputation_after_every_normalization(
    conn: Any, schemas: Schemas, lander: Lander, example: ModuleType, order: str
) -> None:
    runs = history(lander)
    examples = f"{schemas.target}_examples"
    for step in ORDERS[order]:
        normalize_runs(conn, [runs[name].run_id for name in step], schemas)
        example.refresh_hiring_funnel(conn, schemas.target, examples)
        assert summary(conn, examples) == recomputed(conn, schemas), f"after normalizing {step}"
    # Something was counted and something was deleted: the comparisons above compared real data.
    final = recomputed(conn, schemas)
    assert sum(row[-1] for row in final) == 4  # int-1's a1, a2, a6; int-2's b2
    assert any(None in row for row in final)


def test_a_refresh_with_nothing_new_reads_nothing_and_changes_nothing(
    conn: Any, schemas: Schemas, lander: Lander, example: ModuleType
) -> None:
    runs = history(lander)
    examples = f"{schemas.target}_examples"
    with pytest.raises(RuntimeError, match=f"Schema '{schemas.target}' has no change feed"):
        example.refresh_hiring_funnel(conn, schemas.target, examples)
    ensure_schema(conn, schemas)
    first = example.refresh_hiring_funnel(conn, schemas.target, examples)  # nothing normalized yet
    assert first["from_seq"] is None
    assert (first["applications_read"], summary(conn, examples)) == (0, [])
    normalize_runs(conn, [runs["r1"].run_id, runs["r2"].run_id], schemas)
    window = example.refresh_hiring_funnel(conn, schemas.target, examples)
    assert window["applications_read"] == 5
    counted = ("hiring_funnel", "hiring_funnel_applications")
    before = {name: table(conn, examples, name) for name in counted}

    again = example.refresh_hiring_funnel(conn, schemas.target, examples)
    assert again == {"from_seq": window["to_seq"], "to_seq": window["to_seq"], "applications_read": 0}
    # A run normalized twice changes no row, so it leaves nothing in the feed to read (its value is passed).
    normalize_runs(conn, [runs["r2"].run_id], schemas)
    repeat = example.refresh_hiring_funnel(conn, schemas.target, examples)
    assert repeat["applications_read"] == 0
    assert repeat["to_seq"] > repeat["from_seq"] == window["to_seq"]
    assert {name: table(conn, examples, name) for name in counted} == before
    assert [row[1] for row in table(conn, examples, "hiring_funnel_watermark")] == [repeat["to_seq"]]


def test_a_failed_refresh_changes_nothing_and_its_retry_completes(
    conn: Any, schemas: Schemas, lander: Lander, example: ModuleType
) -> None:
    runs = history(lander)
    examples = f"{schemas.target}_examples"
    normalize_runs(conn, [runs["r1"].run_id], schemas)
    example.refresh_hiring_funnel(conn, schemas.target, examples)
    normalize_runs(conn, [runs["r2"].run_id], schemas)
    before = {name: table(conn, examples, name) for name in TABLES}
    # The next refresh fails after it has changed the mirror: a lock on the summary makes its write time out.
    blocker = psycopg2.connect(conn.dsn)
    try:
        with blocker.cursor() as cur:
            cur.execute(f"LOCK TABLE {examples}.hiring_funnel IN ACCESS EXCLUSIVE MODE")  # held until closed
        with conn, conn.cursor() as cur:
            cur.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            example.refresh_hiring_funnel(conn, schemas.target, examples)
    finally:
        blocker.close()
        with conn, conn.cursor() as cur:
            cur.execute("RESET lock_timeout")
    assert {name: table(conn, examples, name) for name in TABLES} == before
    assert summary(conn, examples) != recomputed(conn, schemas), "r2's changes are not counted yet"
    example.refresh_hiring_funnel(conn, schemas.target, examples)
    assert summary(conn, examples) == recomputed(conn, schemas)


def test_a_summary_edited_by_hand_fails_the_refresh_and_is_left_as_it_was(
    conn: Any, schemas: Schemas, lander: Lander, example: ModuleType
) -> None:
    runs = history(lander)
    examples = f"{schemas.target}_examples"
    normalize_runs(conn, [runs["r1"].run_id], schemas)
    example.refresh_hiring_funnel(conn, schemas.target, examples)
    normalize_runs(conn, [runs["r2"].run_id], schemas)  # moves a1 out of its group
    with conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {examples}.hiring_funnel WHERE stage = 'Stage s1' AND status = 'ACTIVE'")
    before = {name: table(conn, examples, name) for name in TABLES}
    with pytest.raises(RuntimeError, match=r"disagree \(a negative count\): truncate"):
        example.refresh_hiring_funnel(conn, schemas.target, examples)
    assert {name: table(conn, examples, name) for name in TABLES} == before
    # As the message says: truncated, the next refresh reads everything again.
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(f'{examples}.{name}' for name in TABLES)}")
    assert example.refresh_hiring_funnel(conn, schemas.target, examples)["from_seq"] is None
    assert summary(conn, examples) == recomputed(conn, schemas)


def test_the_task_reports_what_the_events_announced(example: ModuleType) -> None:
    events = [
        SimpleNamespace(extra={"integrations": ["int-2"], "sync_runs": ["sr-2", "sr-1"]}),
        SimpleNamespace(extra={"integrations": ["int-1", "int-2"], "sync_runs": ["sr-3"]}),
        SimpleNamespace(extra=None),  # an event published without an extra (a manual asset event)
    ]
    assert example.announced(events) == (["int-1", "int-2"], ["sr-1", "sr-2", "sr-3"])
    assert example.announced([]) == ([], [])
