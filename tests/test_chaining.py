"""What an asset event carries (``knit_provider.chaining``): the extra summed from the normalize tasks' XComs,
and the change feed's watermark read from Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from knit_provider.chaining import EXTRA_KEYS, TABLE_COUNTS, change_extra, change_watermark
from knit_provider.normalize.apply import NormalizeResult
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas, quote_ident

APPLICATIONS = "ats_applications"


def result(run_id: str, integration_id: str | None, **tables: dict[str, int]) -> dict[str, Any]:
    """One run's entry in a normalize task's XCom, as the runner's result gives it."""
    normalized = NormalizeResult(
        sync_run_id=run_id,
        integration_id=integration_id,
        complete=True,
        record_events=1,
        records=1,
        records_changed=1,
        type_error_events=0,
        unkeyed_events=0,
        seconds=0.1,
        changed_seq=7,
        tables={table: dict.fromkeys(TABLE_COUNTS, 0) | counts for table, counts in tables.items()},
    )
    return normalized.as_dict()


def summary(data_type: str, *runs: dict[str, Any]) -> dict[str, Any]:
    return {"data_type": data_type, "runs": list(runs), "reconciliations": []}


def test_the_extra_sums_each_table_over_the_runs_of_its_type_only() -> None:
    # A run passed over (another task normalized it first): left out, whatever it says.
    skipped = result("sr-skipped", "int-9", ats_applications={"inserted": 100}) | {"skipped": "already normalized"}
    summaries = [
        summary(APPLICATIONS, result("sr-2", "int-b", ats_applications={"inserted": 2, "updated": 1})),
        None,  # a normalize task that was skipped
        summary("ats_jobs", result("sr-jobs", "int-c", ats_jobs={"inserted": 5})),
        summary(
            APPLICATIONS,
            result("sr-1", "int-a", ats_applications={"updated": 3, "soft_deleted": 1}, ats_candidates={"updated": 1}),
            result("sr-2", "int-b", ats_application_interviews={"deleted": 2}),  # normalized again
            result("sr-3", None),
            skipped,
        ),
    ]

    extra = change_extra(APPLICATIONS, summaries, 42)

    assert tuple(extra) == EXTRA_KEYS
    assert extra == {
        "data_type": APPLICATIONS,
        "integrations": ["int-a", "int-b"],
        "sync_runs": ["sr-1", "sr-2", "sr-3"],
        "tables": {
            "ats_applications": {"inserted": 2, "updated": 4, "soft_deleted": 1, "deleted": 0},
            "ats_application_interviews": {"inserted": 0, "updated": 0, "soft_deleted": 0, "deleted": 2},
            "ats_candidates": {"inserted": 0, "updated": 1, "soft_deleted": 0, "deleted": 0},
        },
        "change_watermark": 42,
    }


def test_the_extra_of_nothing_normalized_has_every_key_and_no_rows() -> None:
    extra = change_extra("ats_jobs", [None, summary(APPLICATIONS, result("sr-1", "int-a"))], None)

    assert extra == {
        "data_type": "ats_jobs",
        "integrations": [],
        "sync_runs": [],
        "tables": {},
        "change_watermark": None,
    }
    assert tuple(extra) == EXTRA_KEYS


@pytest.fixture
def feed_conn(pg_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(pg_url)
    yield connection
    connection.close()


def test_the_watermark_is_none_before_the_schema_and_the_last_committed_change_after(feed_conn: Any) -> None:
    schemas = Schemas(landing="chaining_landing", target="chaining_feed")

    assert change_watermark(feed_conn, schemas) is None

    ensure_schema(feed_conn, schemas)
    assert change_watermark(feed_conn, schemas) == 0  # no change yet
    target = quote_ident(schemas.target)
    with feed_conn, feed_conn.cursor() as cur:
        cur.execute(f"SELECT {target}.knit_begin_change()")
        (value,) = cur.fetchone()
        cur.execute(f"SELECT {target}.knit_finish_change()")
    watermark = change_watermark(feed_conn, schemas)
    assert isinstance(watermark, int)
    assert watermark == value
