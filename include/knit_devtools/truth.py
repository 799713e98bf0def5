"""Compare the normalized tables with the simulator's ground truth, and say exactly what differs.

Used by the end-to-end tests, the fault-injection tests and the pipeline benchmark: after every
run is normalized, the tables must hold the source's current state, record by record. The truth's
``dataType`` (``GET /_sim/truth``) picks the tables: applications, or jobs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from knit_provider.settings import Schemas, quote_ident

ATS_JOBS = "ats_jobs"
_CHILD_LISTS = {
    "ats_application_interviews": "interviews",
    "ats_application_offers": "offers",
    "ats_application_attachments": "attachments",
}
_JOB_CHILD_LISTS = {
    "ats_job_departments": "departments",
    "ats_job_offices": "offices",
    "ats_job_hiring_managers": "hiringManagers",
    "ats_job_recruiters": "recruiters",
    "ats_job_stages": "stages",
}


def differences(conn: Any, truth: dict[str, Any], schemas: Schemas | None = None, limit: int = 20) -> list[str]:
    """What the normalized tables get wrong against ``GET /_sim/truth`` (empty when they match).

    A truth without ``dataType`` (an older simulator's) is the applications'.
    """
    target = quote_ident((schemas or Schemas.from_env()).target)
    if truth.get("dataType") == ATS_JOBS:
        problems = _job_differences(conn, truth, target)
    else:
        problems = _application_differences(conn, truth, target)
    if len(problems) > limit:
        problems = [*problems[:limit], f"... and {len(problems) - limit} more"]
    return problems


def _child_counts(
    cur: Any, target: str, tables: dict[str, str], key: str, integration_id: str
) -> dict[str, Counter[str]]:
    """Rows per record (``key``: its id column) in each child table."""
    counts: dict[str, Counter[str]] = {}
    for table in tables:
        cur.execute(
            f"SELECT {key}, count(*) FROM {target}.{quote_ident(table)} WHERE integration_id = %s GROUP BY 1",
            (integration_id,),
        )
        counts[table] = Counter(dict(cur.fetchall()))
    return counts


def _live_set(kind: str, expected: dict[str, Any], live: set[str]) -> list[str]:
    problems = []
    missing, extra = sorted(set(expected) - live), sorted(live - set(expected))
    if missing:
        problems.append(f"{len(missing)} live {kind} missing from the table, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} {kind} live in the table but not in the source, e.g. {extra[:5]}")
    return problems


def _child_sizes(
    what: str, data: dict[str, Any], counts: dict[str, Counter[str]], tables: dict[str, str], record_id: str
) -> list[str]:
    return [
        f"{what}: {counts[table][record_id]} rows in {table}, source has {len(data[key] or [])}"
        for table, key in tables.items()
        if key in data and counts[table][record_id] != len(data[key] or [])
    ]


def _application_differences(conn: Any, truth: dict[str, Any], target: str) -> list[str]:
    """Checks: the set of live applications; each live application's raw models, status and current
    stage; every application the source deleted is soft-deleted (or was never seen); the size of
    each child list; every live application's candidate exists.
    """
    integration_id = truth["integrationId"]
    expected: dict[str, Any] = truth["applications"]
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT application_id, is_deleted, models, status, current_stage_id, candidate_id "
            f"FROM {target}.ats_applications WHERE integration_id = %s",
            (integration_id,),
        )
        rows = {row[0]: row[1:] for row in cur.fetchall()}
        counts = _child_counts(cur, target, _CHILD_LISTS, "application_id", integration_id)
        cur.execute(f"SELECT candidate_id FROM {target}.ats_candidates WHERE integration_id = %s", (integration_id,))
        candidates = {row[0] for row in cur.fetchall()}
    conn.rollback()

    live = {app_id for app_id, row in rows.items() if not row[0]}
    problems = _live_set("applications", expected, live)
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
        problems += _child_sizes(f"application {app_id}", data, counts, _CHILD_LISTS, app_id)
        if candidate_id is not None and candidate_id not in candidates:
            problems.append(f"application {app_id}: candidate {candidate_id} missing from ats_candidates")
    for app_id in truth.get("deleted", {}):
        if app_id in rows and not rows[app_id][0]:
            problems.append(f"application {app_id} was deleted in the source but is live in the table")
    return problems


def _job_differences(conn: Any, truth: dict[str, Any], target: str) -> list[str]:
    """Checks: the set of live jobs; each live job's raw models, title and status; the size of each
    child list (departments, offices, hiring managers, recruiters, stages); every job a delta closed
    is soft-deleted (or was never seen). A job closed before any sync was never sent: it is in
    neither list of the truth, so the live-set check alone keeps it out of the table's live jobs.
    """
    integration_id = truth["integrationId"]
    expected: dict[str, Any] = truth["jobs"]
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT job_id, is_deleted, models, title, status FROM {target}.ats_jobs WHERE integration_id = %s",
            (integration_id,),
        )
        rows = {row[0]: row[1:] for row in cur.fetchall()}
        counts = _child_counts(cur, target, _JOB_CHILD_LISTS, "job_id", integration_id)
    conn.rollback()

    live = {job_id for job_id, row in rows.items() if not row[0]}
    problems = _live_set("jobs", expected, live)
    for job_id in sorted(set(expected) & live):
        data = expected[job_id]
        _, models, title, status = rows[job_id]
        if models != data:
            problems.append(f"job {job_id}: models differ from the source's eventData")
        info = data.get("info") or {}
        if "info" in data and title != info.get("title"):
            problems.append(f"job {job_id}: title {title!r}, source {info.get('title')!r}")
        if "info" in data and status != info.get("status"):
            problems.append(f"job {job_id}: status {status!r}, source {info.get('status')!r}")
        problems += _child_sizes(f"job {job_id}", data, counts, _JOB_CHILD_LISTS, job_id)
    for job_id in truth.get("deleted", {}):
        if job_id in rows and not rows[job_id][0]:
            problems.append(f"job {job_id} was closed in the source but is live in the table")
    return problems
