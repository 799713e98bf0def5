"""Turn a job's state into the ``eventData`` Knit sends for ``ats_jobs`` ("Job Data Models").

``info``, ``departments``, ``offices``, ``hiringManagers``, ``recruiters`` and ``stages`` follow
Knit's page; ``rawValues`` and ``jobPosts`` are shapes the page leaves open (docs/internals.md,
"What the simulator guesses"). People are the applications' users, and a job's stages carry the
ids its applications' ``currentStage`` carries.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from knit_simulator.dataset import JOB_OPEN, JobState
from knit_simulator.render import Renderer, iso
from knit_simulator.vocabulary import DEPARTMENTS, JOB_BOARDS, LOCATIONS, RAW_JOB_STATUSES

JOB_MODEL_KEYS: dict[str, str] = {
    "job_info": "info",
    "job_departments": "departments",
    "job_offices": "offices",
    "job_hiringManagers": "hiringManagers",
    "job_recruiters": "recruiters",
    "job_stages": "stages",
    "job_rawValues": "rawValues",
    "job_posts": "jobPosts",
}
JOB_MODELS: tuple[str, ...] = tuple(JOB_MODEL_KEYS)


class JobRenderer:
    """Renders the jobs of one integration with the people of its applications' renderer."""

    def __init__(self, renderer: Renderer) -> None:
        self.data = renderer.data
        self.users = renderer.users
        self._careers = f"https://careers.{renderer.company}/jobs/"
        # small fixed vocabularies with ids stable per integration: many jobs share each one
        self.departments = [{"id": str(7_100 + d), "name": name} for d, name in enumerate(DEPARTMENTS)]
        self.offices = [
            {"id": str(7_200 + o), "name": city, "location": ", ".join(p for p in (city, state, country) if p)}
            for o, (city, state, country, _) in enumerate(LOCATIONS)
        ]

    def job_id(self, number: int) -> str:
        return self.data.jobs[number].job_id

    def event_data(self, state: JobState, models: Collection[str] = JOB_MODELS) -> dict[str, Any]:
        """The ``eventData`` of a ``record.new``/``record.modified`` event for the subscribed models."""
        out: dict[str, Any] = {}
        job_id = self.job_id(state.number)
        if "job_info" in models:
            out["info"] = self.info(state, job_id)
        if "job_departments" in models:
            out["departments"] = [self.departments[d] for d in state.departments]
        if "job_offices" in models:
            out["offices"] = [self.offices[o] for o in state.offices]
        if "job_hiringManagers" in models:
            out["hiringManagers"] = [self.users[u] for u in state.hiring_managers]
        if "job_recruiters" in models:
            out["recruiters"] = [self.users[u] for u in state.recruiters]
        if "job_stages" in models:
            job = self.data.jobs[state.number]
            out["stages"] = [{"id": sid, "name": name} for sid, name in zip(job.stage_ids, job.pipeline, strict=True)]
        if "job_rawValues" in models:
            out["rawValues"] = {"status": RAW_JOB_STATUSES[state.status], "description": self.description(state, True)}
        if "job_posts" in models:
            out["jobPosts"] = self.posts(state, job_id)
        return out

    def deleted_data(self, state: JobState) -> dict[str, Any]:
        """The ``eventData`` of a closed job's ``record.deleted`` (a guess, shaped like the applications')."""
        return {"jobId": self.job_id(state.number)}

    def info(self, state: JobState, job_id: str) -> dict[str, Any]:
        listed = state.status == JOB_OPEN and not state.confidential  # only an open public job has pages
        return {
            "id": job_id,
            "title": state.title,
            "description": self.description(state, False),
            "createdAt": iso(state.created_ms),
            "updatedAt": iso(state.updated_ms),
            "closedAt": None if state.closed_ms is None else iso(state.closed_ms),
            "status": state.status,
            "isConfidential": state.confidential,
            "jobCodes": [f"REQ-{1000 + state.number}"] if state.status != "DRAFT" else [],
            "infoUrl": f"{self._careers}{job_id}" if listed else None,
            "applyUrl": f"{self._careers}{job_id}/apply" if listed else None,
        }

    def description(self, state: JobState, html: bool) -> str:
        """The job's text; the raw value is the ATS's HTML, ``info`` has it as plain text."""
        team = DEPARTMENTS[state.departments[0]] if state.departments else "our"
        where = " or ".join(self.offices[o]["name"] for o in state.offices)
        text = f"Join the {team} team as {state.title} in {where}. Revision {state.revision + 1}."
        return f"<p>{text}</p>" if html else text

    def posts(self, state: JobState, job_id: str) -> list[dict[str, Any]]:
        """A closed job has none: closing a job takes its posts down."""
        return [
            {
                "id": f"{job_id}-post{k + 1}",
                "title": state.title,
                "board": JOB_BOARDS[k % len(JOB_BOARDS)],
                "url": f"{self._careers}{job_id}?board={k + 1}",
            }
            for k in range(state.posts)
        ]
