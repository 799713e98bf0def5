"""Knit's ``ats_applications``: applications with their candidate, stage, interviews, offers and attachments.

The tables (``sql/schema.sql``): ``ats_applications`` (one row per application), its child lists
(interviews, offers, attachments), ``ats_candidates`` (from the latest application that carries
each candidate), ``ats_application_versions`` and ``ats_application_stage_history``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from knit_provider.data_types.spec import DataTypeSpec, Model, Step, changed_records


def _candidates_changed(cur: Any, rowcounts: list[int]) -> dict[str, int]:
    # The temporary table, the update, the insert: the last two are the candidates written.
    return {"ats_candidates": sum(rowcounts[1:])}


SPEC = DataTypeSpec(
    name="ats_applications",
    title="ATS applications",
    record="application",
    records="applications",
    models=(
        Model("application_info", "info", "Application info (candidate, status, job, owner)"),
        Model("application_stage", "currentStage", "Current stage"),
        Model("application_interviews", "interviews", "Interviews"),
        Model("application_rejection", "rejection", "Rejection"),
        Model("application_offers", "offers", "Offers"),
        Model("application_attachments", "attachments", "Attachments (expiring links)"),
    ),
    record_table="ats_applications",
    record_key="application_id",
    tables=(
        "ats_applications",
        "ats_application_interviews",
        "ats_application_offers",
        "ats_application_attachments",
        "ats_candidates",
        "ats_application_versions",
        "ats_application_stage_history",
    ),
    sql=resources.files(__package__).joinpath("sql"),
    steps=(
        Step("applications.sql", changed_records),
        Step("children.sql"),
        Step("candidates.sql", _candidates_changed),
        Step("history.sql"),
    ),
    earlier_names=True,
)
