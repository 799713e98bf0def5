"""The target schema's DDL upgrades a populated schema of an earlier release in place, and runs again harmlessly."""

from __future__ import annotations

import json
from typing import Any

from normalize_landing import Lander, app, application, rows

from knit_provider.normalize import normalize_runs
from knit_provider.normalize.schema import ensure_schema
from knit_provider.settings import Schemas, quote_ident
from knit_provider.sql import load_sql

# What issue 17 added to a schema created before it (the first release had none of these).
_TO_FIRST_RELEASE = """
ALTER TABLE {t}.ats_application_attachments RENAME COLUMN expiring_link TO link;
ALTER TABLE {t}.ats_application_attachments DROP COLUMN raw;
DROP INDEX {t}.ats_applications_snapshot_idx;
ALTER TABLE {t}.ats_applications DROP COLUMN snapshot_run_id, DROP COLUMN snapshot_first_seq;
ALTER TABLE {t}.normalized_runs DROP COLUMN models, DROP COLUMN snapshot, DROP COLUMN snapshot_note,
    DROP COLUMN snapshot_at, DROP COLUMN snapshot_deleted;
COMMENT ON SCHEMA {t} IS NULL;
"""


def test_a_populated_first_release_schema_is_upgraded_in_place(conn: Any, schemas: Schemas, lander: Lander) -> None:
    ensure_schema(conn, schemas)
    t = quote_ident(schemas.target)
    attachments = [
        {"type": "RESUME", "name": "cv.pdf", "link": "https://files/cv?expires=1"},
        "junk",
        {"type": "OTHER", "name": "n.txt", "link": "https://files/n?expires=1"},
    ]
    with conn, conn.cursor() as cur:
        cur.execute(_TO_FIRST_RELEASE.replace("{t}", t))
        cur.execute(
            f"INSERT INTO {t}.ats_applications (integration_id, application_id, models, version_run_id, "
            "version_first_seq, version_seq, version_event_id, data_run_id, data_first_seq, data_seq, "
            "data_event_id) VALUES ('int-1', 'old', %s, 'sr-old', 0, 0, 'ev-old', 'sr-old', 0, 0, 'ev-old')",
            (json.dumps({"attachments": attachments}),),
        )
        cur.execute(
            f"INSERT INTO {t}.ats_application_attachments VALUES "
            "('int-1', 'old', 1, 'RESUME', 'cv.pdf', 'https://files/cv?expires=1'), "
            "('int-1', 'old', 3, 'OTHER', 'n.txt', 'https://files/n?expires=1')"
        )

    ensure_schema(conn, schemas)

    kept = rows(
        conn, schemas, "SELECT position, expiring_link, raw FROM {t}.ats_application_attachments ORDER BY position"
    )
    assert kept == [
        {"position": n, "expiring_link": attachments[n - 1]["link"], "raw": attachments[n - 1]}  # type: ignore[index]
        for n in (1, 3)
    ]
    old = app(conn, schemas, "old")
    assert (old["snapshot_run_id"], old["is_deleted"]) == (None, False)

    with conn, conn.cursor() as cur:  # the DDL once more, as ensure_schema would after any edit
        cur.execute(load_sql("normalize/schema.sql", schemas))

    # A newer snapshot sees the upgraded row like any other.
    snapshot = lander.initial()
    snapshot.new("a1", data=application("a1"))
    snapshot.complete()
    (result,) = normalize_runs(conn, [snapshot.run_id], schemas)
    assert (result.snapshot, result.snapshot_deleted) == ("applied", 1)
    assert app(conn, schemas, "old")["snapshot_run_id"] == snapshot.run_id
