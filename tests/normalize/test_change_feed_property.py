"""Property: a consumer that reads the change feed by watermark after each normalization keeps an exact copy.

Hypothesis generates runs (initial syncs and deltas of one or two integrations; new, modified and
deleted records over a small pool, with child lists of varying length and changing stages), lands
them through ``land_events`` and normalizes them in a random order with repeats, each example into
a target schema of its own. After every normalization a consumer merges what changed since its
watermark W, as the README says a downstream model does: the keys in ``knit_deleted_rows`` with
``knit_changed_seq`` in (W, hi] are deleted, then the rows with ``knit_changed_seq`` in (W, hi] are
upserted, and W := hi, where hi is ``knit_change_watermark()``. Its copy must equal the tables'
data, every table of the data type, after every step; and a run normalized again changes no row.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from normalize_landing import DATA_TABLES, FEED_COLUMNS, JOB_TABLES, Lander, application, dump

from knit_provider.landing.migrate import migrate
from knit_provider.normalize import normalize_runs
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas, quote_ident

LANDING = "feed_prop_landing"
RECORDS = ("r1", "r2", "r3")
STAGES = ("s1", "s2", "s3")
# A child list's elements, each a status: the list's length and contents vary from event to event.
CHILDREN = st.lists(st.sampled_from(("DONE", "SENT")), max_size=3).map(tuple)
DAY_MS = 86_400_000
_targets = itertools.count(1)


@dataclass(frozen=True)
class Event:
    kind: str  # record.new / record.modified / record.deleted (an initial sync sends record.new only)
    record: str
    stage: str
    children: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """One run to land: its integration, whether it is an initial sync, its events in order."""

    integration: str
    initial: bool
    events: tuple[Event, ...]


plans_strategy = st.lists(
    st.builds(
        Plan,
        integration=st.sampled_from(("int-1", "int-1", "int-2")),
        initial=st.booleans(),
        events=st.lists(
            st.builds(
                Event,
                kind=st.sampled_from(("record.new", "record.modified", "record.deleted")),
                record=st.sampled_from(RECORDS),
                stage=st.sampled_from(STAGES),
                children=CHILDREN,
            ),
            max_size=4,
        ).map(tuple),
    ),
    min_size=1,
    max_size=3,
)


def application_data(event: Event) -> dict[str, Any]:
    """An application at its stage, its interviews and offers from the children (Knit's deletion shape if deleted)."""
    if event.kind == "record.deleted":
        return {"applicationId": event.record, "candidateId": f"c-{event.record}", "jobId": "job-1"}
    data = application(event.record, stage=event.stage)
    data["interviews"] = [{"id": f"iv{n}", "status": status} for n, status in enumerate(event.children, 1)]
    data["offers"] = [{"id": "o1", "status": status} for status in event.children[:1]]
    return data


def job_data(event: Event) -> dict[str, Any]:
    """A job titled by the stage, its departments and stages from the children ({"jobId"} if closed)."""
    if event.kind == "record.deleted":
        return {"jobId": event.record}
    children = [{"id": f"x{n}", "name": status} for n, status in enumerate(event.children, 1)]
    return {
        "info": {"id": event.record, "title": f"Title {event.stage}", "status": "OPEN"},
        "departments": children,
        "stages": children[1:],
    }


@dataclass(frozen=True)
class DataType:
    name: str
    tables: dict[str, str]
    data: Callable[[Event], dict[str, Any]]


APPLICATIONS = DataType("ats_applications", DATA_TABLES, application_data)
JOBS = DataType("ats_jobs", JOB_TABLES, job_data)


class Consumer:
    """A downstream copy of the tables, kept by watermark in Python dicts keyed by primary key."""

    def __init__(self, conn: Any, schemas: Schemas, tables: dict[str, str]) -> None:
        self.conn = conn
        self.target = quote_ident(schemas.target)
        self.watermark = 0  # a fresh schema: every row carries a value above 0
        self.columns: dict[str, list[str]] = {}
        self.keys: dict[str, list[int]] = {}
        self.copy: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {table: {} for table in tables}
        with conn, conn.cursor() as cur:
            for table in tables:
                cur.execute(
                    "SELECT array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s AND column_name NOT IN %s",
                    (schemas.target, table, FEED_COLUMNS),
                )
                (self.columns[table],) = cur.fetchone()
                cur.execute(f"SELECT {self.target}.knit_key_columns(%s::regclass)", (f"{self.target}.{table}",))
                (keys,) = cur.fetchone()
                self.keys[table] = [self.columns[table].index(k) for k in keys]

    def key(self, table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(row[n] for n in self.keys[table])

    def catch_up(self) -> None:
        """Merge every change in (W, hi]: the watermark in a statement of its own, then the reads."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute(f"SELECT {self.target}.knit_change_watermark()")
            (hi,) = cur.fetchone()
        with self.conn, self.conn.cursor() as cur:
            for table, copy in self.copy.items():
                names = [self.columns[table][n] for n in self.keys[table]]
                cur.execute(
                    f"SELECT row_key FROM {self.target}.knit_deleted_rows "
                    "WHERE table_name = %s AND knit_changed_seq > %s AND knit_changed_seq <= %s",
                    (table, self.watermark, hi),
                )
                for (row_key,) in cur.fetchall():
                    copy.pop(tuple(row_key[name] for name in names), None)
                columns = ", ".join(quote_ident(c) for c in self.columns[table])
                cur.execute(
                    f"SELECT {columns} FROM {self.target}.{table} "
                    "WHERE knit_changed_seq > %s AND knit_changed_seq <= %s",
                    (self.watermark, hi),
                )
                for row in cur.fetchall():
                    copy[self.key(table, row)] = row
        self.watermark = hi

    def tables(self) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
        return self.copy


@pytest.fixture(scope="module")
def landing(conn: Any) -> Schemas:
    schemas = Schemas(landing=LANDING, target="feed_prop_unused")
    migrate(conn, schemas)
    return schemas


@contextmanager
def fresh_target(conn: Any) -> Iterator[Schemas]:
    """Per example: an empty landing store and a target schema of its own (with its tables), dropped after."""
    schemas = Schemas(landing=LANDING, target=f"feed_prop_t{next(_targets)}")
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {LANDING}.events, {LANDING}.sync_runs RESTART IDENTITY")
    ensure_schema(conn, schemas)
    try:
        yield schemas
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {quote_ident(schemas.target)} CASCADE")


def land(lander: Lander, data_type: DataType, plans: list[Plan]) -> list[str]:
    """Land the runs in order (each later than the one before); their ids."""
    run_ids = []
    for n, plan in enumerate(plans):
        run = lander.run(
            integration_id=plan.integration,
            sync_type="initial_sync" if plan.initial else "delta_sync",
            data_type=data_type.name,
        )
        for event in plan.events:
            kind = "record.new" if plan.initial else event.kind
            run.record(kind, event.record, data_type.data(Event(kind, event.record, event.stage, event.children)))
        run.complete(started_ms=1_700_000_000_000 + n * DAY_MS)
        run_ids.append(run.run_id)
    return run_ids


def check_consumer(conn: Any, data_type: DataType, plans: list[Plan], data: st.DataObject) -> None:
    with fresh_target(conn) as schemas:
        run_ids = land(Lander(conn, schemas), data_type, plans)
        repeats = data.draw(st.lists(st.sampled_from(run_ids), max_size=2), label="normalized again")
        order = data.draw(st.permutations(run_ids + repeats), label="order")
        consumer = Consumer(conn, schemas, data_type.tables)
        done: set[str] = set()
        for run_id in order:
            (result,) = normalize_runs(conn, [run_id], schemas)
            if run_id in done:  # the same runs, so the same data: no row may look changed
                assert all(count == 0 for counts in result.tables.values() for count in counts.values()), result
            done.add(run_id)
            consumer.catch_up()
            tables = dump(conn, schemas, data_type.tables)
            assert consumer.tables() == {
                table: {consumer.key(table, row): row for row in found} for table, found in tables.items()
            }, f"after {run_id}"


# Bounded (a normalization costs about 0.2 s even for one event): each example normalizes at most five small runs.
PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(plans=plans_strategy, data=st.data())
def test_a_consumer_reading_by_watermark_keeps_the_applications_tables_exactly(
    conn: Any, landing: Schemas, plans: list[Plan], data: st.DataObject
) -> None:
    check_consumer(conn, APPLICATIONS, plans, data)


@settings(PROPERTY, max_examples=6)
@given(plans=plans_strategy, data=st.data())
def test_a_consumer_reading_by_watermark_keeps_the_jobs_tables_exactly(
    conn: Any, landing: Schemas, plans: list[Plan], data: st.DataObject
) -> None:
    check_consumer(conn, JOBS, plans, data)
