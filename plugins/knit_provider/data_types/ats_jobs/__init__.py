"""Knit's ``ats_jobs``: jobs with their departments, offices, hiring managers, recruiters and stages.

The tables (``sql/schema.sql``): ``ats_jobs`` (one row per job; a closed job arrives as
``record.deleted``, so it is soft-deleted with its last data), one table per typed list, and the view
``ats_applications_with_jobs`` (each application with its job's title, status, department and
office). Knit's other job models (raw values, posts, compensation, questions, requirements,
enhanced info) are kept as sent in ``ats_jobs.models`` only.
"""

from __future__ import annotations

from importlib import resources

from knit_provider.data_types.spec import DataTypeSpec, Model, Step, changed_records

SPEC = DataTypeSpec(
    name="ats_jobs",
    title="ATS jobs",
    record="job",
    records="jobs",
    models=(
        Model("job_info", "info", "Job info (title, status, dates, URLs)"),
        Model("job_departments", "departments", "Departments"),
        Model("job_offices", "offices", "Offices"),
        Model("job_hiringManagers", "hiringManagers", "Hiring managers"),
        Model("job_recruiters", "recruiters", "Recruiters"),
        Model("job_stages", "stages", "Stages"),
        # Kept raw in ats_jobs.models only.
        Model("job_rawValues", "rawValues", "Raw values (kept as sent)", default=False),
        Model("job_posts", "jobPosts", "Job posts (kept as sent)", default=False),
        Model("job_compensation", "jobCompensation", "Compensation (kept as sent)", default=False),
        Model("job_questions", "jobQuestions", "Application questions (kept as sent)", default=False),
        Model("job_requirements", "jobRequirements", "Requirements (kept as sent)", default=False),
        Model("job_info_enhanced", "jobInfoEnhanced", "Enhanced job info (kept as sent)", default=False),
    ),
    record_table="ats_jobs",
    record_key="job_id",
    tables=(
        "ats_jobs",
        "ats_job_departments",
        "ats_job_offices",
        "ats_job_hiring_managers",
        "ats_job_recruiters",
        "ats_job_stages",
        "ats_applications_with_jobs",
    ),
    sql=resources.files(__package__).joinpath("sql"),
    steps=(
        Step("jobs.sql", changed_records),
        Step("children.sql"),
    ),
)
