"""
### Example: a downstream summary kept up to date incrementally from Knit's change feed

**Copy this file** to chain your own model on Knit's applications. It shows the three handles:

1. **The asset.** The DAG is scheduled on `knit://ats_applications`, which every Knit DAG that
   normalizes applications updates (the scheduled and on-delivery DAGs, onboarding, backfills).
2. **The asset event's extra.** Each event says what its publish normalized: `data_type`,
   `integrations`, `sync_runs`, `tables` (rows inserted, updated, soft-deleted and deleted per table)
   and `change_watermark`. The task reads them from `triggering_asset_events` and logs and returns
   them. Events that arrive while a run is queued are merged into one DAG run, so there may be several.
3. **The change feed.** The task does *not* reread only the announced integrations: a run of another
   integration may have committed meanwhile, and an event can be merged or missed. It reads every
   application whose `knit_changed_seq` is above its own watermark **W** and at or below
   `knit.knit_change_watermark()` (**hi**, called in a statement of its own), whatever the order
   Knit's runs were normalized in, backfills and repeats included.

It keeps `knit_examples.hiring_funnel`: live (not `is_deleted`) applications per integration,
applied day (UTC date of `applied_at`), current stage name and status. A changed application's old
contribution is subtracted (from the mirror `knit_examples.hiring_funnel_applications`, one row per
application counted) and its new one added; only the groups they touch are written. The summary,
the mirror and the new W (`knit_examples.hiring_funnel_watermark`) commit in one transaction, so a
failed try changes nothing and a retry is safe. After any sequence of runs the summary equals

```sql
SELECT integration_id, (applied_at AT TIME ZONE 'UTC')::date AS day, current_stage_name AS stage,
       status, count(*) AS applications
FROM knit.ats_applications WHERE NOT is_deleted GROUP BY 1, 2, 3, 4;
```

**Needs**: PostgreSQL 15 or later (a NULL day, stage or status is a group of its own: `UNIQUE NULLS
NOT DISTINCT`); the connection `knit_landing_default` with the right to create schema `knit_examples`
(the task creates its tables if they are missing). The normalized schema is `$KNIT_SCHEMA`, else `knit`.
**Starting over**: truncate the three tables (W becomes NULL: the next run reads everything). Do it too
after anyone TRUNCATEs Knit's tables by hand: a truncate leaves nothing in the feed to follow.
**Returns** (XCom): `integrations`, `sync_runs` (from the events), `from_seq` (W; null at first),
`to_seq` (hi), `applications_read`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task
from psycopg2 import sql

from knit_provider.run_plans import APPLICATIONS_ASSET
from knit_provider.settings import DEFAULT_LANDING_CONN_ID

log = logging.getLogger(__name__)

EXAMPLE_SCHEMA = "knit_examples"
TABLES = ("hiring_funnel", "hiring_funnel_applications", "hiring_funnel_watermark")

# {examples} is this example's schema, {knit} Knit's normalized schema.
CREATE_TABLES = """
CREATE SCHEMA IF NOT EXISTS {examples};

-- The summary. NULLS NOT DISTINCT (PostgreSQL 15+): a NULL day, stage or status is one group, not many.
CREATE TABLE IF NOT EXISTS {examples}.hiring_funnel (
    integration_id text   NOT NULL,
    day            date,
    stage          text,
    status         text,
    applications   bigint NOT NULL,
    CONSTRAINT hiring_funnel_group UNIQUE NULLS NOT DISTINCT (integration_id, day, stage, status)
);
-- The groups a refresh has just emptied, so removing them reads those rows only.
CREATE INDEX IF NOT EXISTS hiring_funnel_empty ON {examples}.hiring_funnel (integration_id) WHERE applications = 0;

-- One row per live application counted in the summary, with its group: what a change subtracts.
CREATE TABLE IF NOT EXISTS {examples}.hiring_funnel_applications (
    integration_id text NOT NULL,
    application_id text NOT NULL,
    day            date,
    stage          text,
    status         text,
    PRIMARY KEY (integration_id, application_id)
);

-- The change feed's value read up to (W), one row. NULL: nothing read yet.
CREATE TABLE IF NOT EXISTS {examples}.hiring_funnel_watermark (
    one_row    boolean     PRIMARY KEY DEFAULT true CHECK (one_row),
    watermark  bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {examples}.hiring_funnel_watermark DEFAULT VALUES ON CONFLICT DO NOTHING;
"""

# W, locked until commit: a second refresh waits here, then reads the W this one leaves.
READ_WATERMARK = "SELECT watermark FROM {examples}.hiring_funnel_watermark FOR UPDATE"

# Knit's DAGs create the feed with the schema, at their first normalization: without it, say so.
HAS_FEED = "SELECT to_regprocedure(format('%%I.knit_change_watermark()', %(knit)s)) IS NOT NULL"

# hi: every change at or below it has committed. A statement of its own: the reads below run in later
# statements, whose snapshots (READ COMMITTED) see every one of those changes.
CHANGE_WATERMARK = "SELECT {knit}.knit_change_watermark()"

# The applications that changed in (W, hi], soft deletes included, with the group each now counts in.
# Applications are never hard-deleted from ats_applications (Knit's deletions are soft: is_deleted), so
# knit.knit_deleted_rows, where keys that are gone are listed, holds none of them: this table needs no
# delete step. A model of a child table (interviews, offers, stage history) must read it too.
READ_CHANGED = """
CREATE TEMP TABLE hiring_funnel_changed ON COMMIT DROP AS
SELECT integration_id, application_id, is_deleted,
       (applied_at AT TIME ZONE 'UTC')::date AS day, current_stage_name AS stage, status
FROM {knit}.ats_applications
WHERE (%(from_seq)s::bigint IS NULL OR knit_changed_seq > %(from_seq)s) AND knit_changed_seq <= %(to_seq)s
"""

# Per group: -1 for each changed application's old contribution (from the mirror), +1 for each new one.
GROUP_DELTAS = """
CREATE TEMP TABLE hiring_funnel_deltas ON COMMIT DROP AS
SELECT integration_id, day, stage, status, sum(delta) AS delta
FROM (
    SELECT m.integration_id, m.day, m.stage, m.status, -1 AS delta
    FROM {examples}.hiring_funnel_applications m
    JOIN hiring_funnel_changed c USING (integration_id, application_id)
    UNION ALL
    SELECT integration_id, day, stage, status, 1 FROM hiring_funnel_changed WHERE NOT is_deleted
) contributions
GROUP BY integration_id, day, stage, status
HAVING sum(delta) <> 0
"""

# The mirror follows: the changed applications' rows replaced by the live ones.
FORGET_CHANGED = """
DELETE FROM {examples}.hiring_funnel_applications m
USING hiring_funnel_changed c
WHERE m.integration_id = c.integration_id AND m.application_id = c.application_id
"""
MIRROR_LIVE = """
INSERT INTO {examples}.hiring_funnel_applications (integration_id, application_id, day, stage, status)
SELECT integration_id, application_id, day, stage, status FROM hiring_funnel_changed WHERE NOT is_deleted
"""

# Only the groups touched: add each delta (a new group starts at it), then drop the groups now empty.
APPLY_DELTAS = """
INSERT INTO {examples}.hiring_funnel AS f (integration_id, day, stage, status, applications)
SELECT integration_id, day, stage, status, delta FROM hiring_funnel_deltas
ON CONFLICT (integration_id, day, stage, status)
DO UPDATE SET applications = f.applications + excluded.applications
RETURNING applications
"""
DROP_EMPTY = "DELETE FROM {examples}.hiring_funnel WHERE applications = 0"

SAVE_WATERMARK = "UPDATE {examples}.hiring_funnel_watermark SET watermark = %(to_seq)s, updated_at = now()"


def _sql(text: str, **schemas: str) -> sql.Composed:
    """``text`` with its ``{knit}`` and ``{examples}`` replaced by the schemas, quoted."""
    return sql.SQL(text).format(**{name: sql.Identifier(schema) for name, schema in schemas.items()})


def create_tables(conn: Any, examples: str = EXAMPLE_SCHEMA) -> None:
    """Create the example's schema and three tables if they are missing (their own transaction)."""
    with conn, conn.cursor() as cur:
        cur.execute(_sql(CREATE_TABLES, examples=examples))


def refresh_hiring_funnel(conn: Any, knit: str = "knit", examples: str = EXAMPLE_SCHEMA) -> dict[str, Any]:
    """Bring the summary up to Knit's change watermark, in one transaction; return the range read.

    ``conn`` is an open psycopg2 connection; ``knit`` the normalized schema, ``examples`` this example's.
    Returns ``{"from_seq": W, "to_seq": hi, "applications_read": n}``.
    """
    if conn.autocommit:
        raise ValueError("refresh_hiring_funnel needs a connection with autocommit off: it runs one transaction.")
    create_tables(conn, examples)
    with conn, conn.cursor() as cur:
        # Each statement below must see what committed before it (the feed's reading rule).
        cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute(_sql(READ_WATERMARK, examples=examples))
        (from_seq,) = cur.fetchone()
        cur.execute(HAS_FEED, {"knit": knit})
        if not cur.fetchone()[0]:
            raise RuntimeError(
                f"Schema {knit!r} has no change feed: nothing was normalized there yet, or KNIT_SCHEMA differs."
            )
        cur.execute(_sql(CHANGE_WATERMARK, knit=knit))
        (to_seq,) = cur.fetchone()
        window = {"from_seq": from_seq, "to_seq": to_seq}
        cur.execute(_sql(READ_CHANGED, knit=knit), window)
        applications_read = cur.rowcount
        for step in (GROUP_DELTAS, FORGET_CHANGED, MIRROR_LIVE, APPLY_DELTAS):
            cur.execute(_sql(step, examples=examples))
        if any(applications < 0 for (applications,) in cur.fetchall()):
            # Only if someone edited the tables by hand; raising rolls everything back.
            raise RuntimeError(
                f"{examples}.hiring_funnel and its mirror disagree (a negative count): truncate "
                f"{', '.join(f'{examples}.{t}' for t in TABLES)} and the next run rebuilds them."
            )
        cur.execute(_sql(DROP_EMPTY, examples=examples))
        cur.execute(_sql(SAVE_WATERMARK, examples=examples), window)
    return {**window, "applications_read": applications_read}


def announced(events: Iterable[Any]) -> tuple[list[str], list[str]]:
    """The integrations and sync runs the triggering asset events' extras name, each sorted and unique.

    Informative only: the change feed, not this list, says what to read.
    """
    integrations: set[str] = set()
    sync_runs: set[str] = set()
    for event in events:
        extra: Mapping[str, Any] = event.extra or {}
        integrations.update(extra.get("integrations") or ())
        sync_runs.update(extra.get("sync_runs") or ())
    return sorted(integrations), sorted(sync_runs)


with DAG(
    dag_id="knit_example_hiring_funnel",
    description="Example: applications per day, stage and status, kept incrementally from Knit's change feed.",
    schedule=[APPLICATIONS_ASSET],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args={
        "owner": "data-platform",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(minutes=30),
    },
    tags=["knit", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def refresh(**context: Any) -> dict[str, Any]:
        """Log what the events announced, then read the change feed from W and update the summary."""
        from knit_provider.hooks.landing import KnitLandingHook
        from knit_provider.settings import Schemas

        # A manual run has no event; the feed still says what changed.
        integrations, sync_runs = announced(context["triggering_asset_events"].get(APPLICATIONS_ASSET, ()))
        log.info("Announced: integrations %s, sync runs %s", integrations or "none", sync_runs or "none")
        conn = KnitLandingHook(DEFAULT_LANDING_CONN_ID, application_name="knit-example-hiring-funnel").get_conn()
        try:
            window = refresh_hiring_funnel(conn, Schemas.from_env().target)
        finally:
            conn.close()
        log.info("Read %(applications_read)d changed application(s) in (%(from_seq)s, %(to_seq)s]", window)
        return {"integrations": integrations, "sync_runs": sync_runs, **window}

    refresh()
