"""Compare the normalized tables with the simulator's ground truth, and say exactly what differs.

Used by the end-to-end tests, the fault-injection tests and the pipeline benchmark: after every
run is normalized, the tables must hold the source's current state, application by application.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from knit_provider.settings import Schemas, quote_ident

_CHILD_LISTS = {
    "ats_application_interviews": "interviews",
    "ats_application_offers": "offers",
    "ats_application_attachments": "attachments",
}


def differences(conn: Any, truth: dict[str, Any], schemas: Schemas | None = None, limit: int = 20) -> list[str]:
    """What the normalized tables get wrong against ``GET /_sim/truth`` (empty when they match).

    Checks: the set of live applications; each live application's raw models, status and current
    stage; every application the source deleted is soft-deleted (or was never seen); the size of
    each child list; every live application's candidate exists.
    """
    target = quote_ident((schemas or Schemas.from_env()).target)
    integration_id = truth["integrationId"]
    expected: dict[str, Any] = truth["applications"]
    problems: list[str] = []
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT application_id, is_deleted, models, status, current_stage_id, candidate_id "
            f"FROM {target}.ats_applications WHERE integration_id = %s",
            (integration_id,),
        )
        rows = {row[0]: row[1:] for row in cur.fetchall()}
        counts: dict[str, Counter[str]] = {}
        for table in _CHILD_LISTS:
            cur.execute(
                f"SELECT application_id, count(*) FROM {target}.{quote_ident(table)} "
                f"WHERE integration_id = %s GROUP BY 1",
                (integration_id,),
            )
            counts[table] = Counter(dict(cur.fetchall()))
        cur.execute(f"SELECT candidate_id FROM {target}.ats_candidates WHERE integration_id = %s", (integration_id,))
        candidates = {row[0] for row in cur.fetchall()}
    conn.rollback()

    live = {app_id for app_id, row in rows.items() if not row[0]}
    missing, extra = sorted(set(expected) - live), sorted(live - set(expected))
    if missing:
        problems.append(f"{len(missing)} live applications missing from the table, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} applications live in the table but not in the source, e.g. {extra[:5]}")
    for app_id in sorted(set(expected) & live):
        data = expected[app_id]
        _, models, status, stage_id, candidate_id = rows[app_id]
        if models != data:
            problems.append(f"application {app_id}: models differ from the source's eventData")
        info = data.get("info") or {}
        if "info" in data and status != info.get("status"):
            problems.append(f"application {app_id}: status {status!r}, source {info.get('status')!r}")
        stage = data.get("currentStage") or {}
        if "currentStage" in data and stage_id != stage.get("id"):
            problems.append(f"application {app_id}: stage {stage_id!r}, source {stage.get('id')!r}")
        for table, key in _CHILD_LISTS.items():
            if key in data and counts[table][app_id] != len(data[key] or []):
                problems.append(
                    f"application {app_id}: {counts[table][app_id]} rows in {table}, source has {len(data[key] or [])}"
                )
        if candidate_id is not None and candidate_id not in candidates:
            problems.append(f"application {app_id}: candidate {candidate_id} missing from ats_candidates")
    for app_id in truth.get("deleted", {}):
        if app_id in rows and not rows[app_id][0]:
            problems.append(f"application {app_id} was deleted in the source but is live in the table")
    if len(problems) > limit:
        problems = [*problems[:limit], f"... and {len(problems) - limit} more"]
    return problems
