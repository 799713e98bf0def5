"""Turn an application's state into the ``eventData`` Knit sends: its six models, nulls included.

Shapes are those of Knit's "Application Data Models" page unless ``guessed`` (``--guessed-shapes``):
the shapes guessed before it was read. Both render the same state with the same ids and values;
only where and how a value sits differs.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timezone
from typing import Any

from knit_simulator.dataset import USERS, AppState, IntegrationData
from knit_simulator.rng import Rng
from knit_simulator.vocabulary import (
    ATTACHMENT_KINDS,
    CAMPAIGNS,
    EMAIL_DOMAINS,
    EMAIL_TYPES,
    FIRST_NAMES,
    FIRST_SLUGS,
    INTERVIEW_SUBJECTS,
    JOB_TITLES,
    LAST_NAMES,
    LAST_SLUGS,
    LINK_HOSTS,
    LOCATIONS,
    ORIGINS,
    PHONE_TYPES,
    REJECTION_REASONS,
)

MODEL_KEYS: dict[str, str] = {
    "application_info": "info",
    "application_stage": "currentStage",
    "application_interviews": "interviews",
    "application_rejection": "rejection",
    "application_offers": "offers",
    "application_attachments": "attachments",
}
ALL_MODELS: tuple[str, ...] = tuple(MODEL_KEYS)
LINK_LIFETIME_MS = 7 * 86_400_000

_days: dict[int, str] = {}
_minutes: dict[int, str] = {}
_MINUTE_CACHE_LIMIT = 1 << 20
_TWO = [f"{n:02d}" for n in range(60)]  # two-digit hours, minutes, seconds


def iso(ms: int) -> str:
    """ISO-8601 UTC with a ``Z``. Cached: a run formats millions of times, mostly whole minutes."""
    found = _minutes.get(ms)
    if found is not None:
        return found
    day, rest = divmod(ms, 86_400_000)
    date = _days.get(day)
    if date is None:
        date = _days[day] = datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%d")
    seconds = rest // 1000
    text = f"{date}T{_TWO[seconds // 3600]}:{_TWO[seconds // 60 % 60]}:{_TWO[seconds % 60]}Z"
    if ms % 60_000 == 0 and len(_minutes) < _MINUTE_CACHE_LIMIT:
        _minutes[ms] = text
    return text


class Renderer:
    """Renders applications of one integration; people and stages are built once and shared."""

    def __init__(self, data: IntegrationData, guessed: bool = False) -> None:
        self.data = data
        self.guessed = guessed
        self.company = company = f"{LAST_NAMES[data.key % len(LAST_NAMES)].lower().replace(' ', '')}-talent.com"
        rng = Rng(data.key ^ 0x05E25)
        self.users: list[dict[str, Any]] = []
        for u in range(USERS):
            first, last = rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)
            self.users.append(
                {
                    "id": str(9_100_000 + u),
                    "email": f"{first.lower()}.{last.lower().replace(' ', '')}@{company}",
                    "employeeId": f"EMP-{1000 + u}" if rng.chance(0.7) else None,
                }
            )
        self.stages: list[list[dict[str, Any]]] = []
        self.refresh_jobs()
        self._file_host = f"https://files.{company}/attachments/"
        self._locations: list[Any] = [
            {"city": city, "state": state, "country": country, "zipCode": zip_code}
            if guessed
            else ", ".join(part for part in (city, state, country) if part)
            for city, state, country, zip_code in LOCATIONS
        ]
        self._last_candidate: tuple[int, dict[str, Any]] = (-1, {})
        self._panels: dict[tuple[int, ...], list[dict[str, Any]]] = {}  # interviewers, by user tuple

    def refresh_jobs(self) -> None:
        """Build the stages of jobs not seen yet (a delta of ``ats_jobs`` opens jobs new applications go to).

        Knit documents a stage as {id, text}; the guess let some ATSs call the label "name".
        """
        for job in self.data.jobs[len(self.stages) :]:
            key = job.label_key if self.guessed else "text"
            self.stages.append([{"id": sid, key: name} for sid, name in zip(job.stage_ids, job.pipeline, strict=True)])

    def event_data(self, state: AppState, models: Collection[str] = ALL_MODELS) -> dict[str, Any]:
        """The ``eventData`` of a ``record.new``/``record.modified`` event for the subscribed models."""
        out: dict[str, Any] = {}
        app_id = self.data.application_id(state.number)
        if "application_info" in models:
            out["info"] = self.info(state, app_id)
            if not self.guessed:
                custom = self.custom_fields(state)
                if custom is not None:
                    out["customFields"] = custom
        if "application_stage" in models:
            out["currentStage"] = self.stages[state.job][state.stage]
        if "application_interviews" in models:
            out["interviews"] = self.interviews(state, app_id)
        if "application_rejection" in models:
            out["rejection"] = self.rejection(state, app_id)
        if "application_offers" in models:
            out["offers"] = self.offers(state, app_id)
        if "application_attachments" in models:
            out["attachments"] = self.attachments(state, app_id)
        return out

    def deleted_data(self, state: AppState) -> dict[str, Any]:
        """The ``eventData`` of a ``record.deleted`` event."""
        return {
            "applicationId": self.data.application_id(state.number),
            "candidateId": self.data.candidate_id(state.candidate),
            "jobId": self.data.jobs[state.job].job_id,
        }

    def info(self, state: AppState, app_id: str) -> dict[str, Any]:
        job = self.data.jobs[state.job]
        info = {
            "id": app_id,
            "status": state.status,
            "candidate": self.candidate(state.candidate),
            "origin": ORIGINS[state.origin % len(ORIGINS)],
            "appliedAt": iso(state.applied_ms),
            "updatedAt": iso(state.updated_ms),
            "jobId": job.job_id,
            "owner": self.users[state.owner],
            "creditedTo": None if state.credited is None else self.users[state.credited],
        }
        if self.guessed:  # Knit's application info has no job title (its job model has)
            info["jobTitle"] = JOB_TITLES[job.title % len(JOB_TITLES)]
        return info

    def custom_fields(self, state: AppState) -> dict[str, Any] | None:
        """``customFields`` on two applications in three (one of them empty), absent on the third."""
        kind = state.number % 3
        if kind == 2:
            return None
        if kind == 0:
            return {}
        return {"sourceCampaign": CAMPAIGNS[state.origin % len(CAMPAIGNS)], "relocation": state.origin % 2 == 0}

    def candidate(self, candidate: int) -> dict[str, Any]:
        """The candidate's object; the last one is kept, as applications sharing one are neighbours."""
        if candidate == self._last_candidate[0]:
            return self._last_candidate[1]
        rendered = self._candidate(candidate)
        self._last_candidate = (candidate, rendered)
        return rendered

    def _candidate(self, candidate: int) -> dict[str, Any]:
        rng = Rng(self.data.key ^ 0xC0FFEE + candidate * 0xD1B54A32D192ED03)
        f, la, domain, extra, kind, n_phones, n_links, located, where = rng.many(
            len(FIRST_NAMES), len(LAST_NAMES), len(EMAIL_DOMAINS), 4, len(EMAIL_TYPES), 3, 3, 5, len(LOCATIONS)
        )
        handle = f"{FIRST_SLUGS[f]}.{LAST_SLUGS[la]}{candidate % 1000}"
        emails = [{"type": "PERSONAL", "email": f"{handle}@{EMAIL_DOMAINS[domain]}"}]
        if extra == 0:
            emails.append({"type": EMAIL_TYPES[kind], "email": f"{FIRST_SLUGS[f]}@{LAST_SLUGS[la]}.dev"})
        phones = []
        for _ in range(n_phones):
            phone_type, number = rng.many(len(PHONE_TYPES), 8_000_000_000)
            phones.append({"type": PHONE_TYPES[phone_type], "phoneNumber": f"+1{2_000_000_000 + number}"})
        path = handle.replace(".", "-")
        links = [f"{LINK_HOSTS[rng.below(len(LINK_HOSTS))]}{path}" for _ in range(n_links)]
        return {
            "id": self.data.candidate_id(candidate),
            "firstName": FIRST_NAMES[f],
            "lastName": LAST_NAMES[la],
            "phones": phones,
            "emails": emails,
            "links": links,
            "location": self._locations[where] if located else None,
        }

    def interviews(self, state: AppState, app_id: str) -> list[dict[str, Any]]:
        out = []
        for k, iv in enumerate(state.interviews):
            interview = {
                "id": f"{app_id}-iv{k + 1}",
                "subject": INTERVIEW_SUBJECTS[iv.subject % len(INTERVIEW_SUBJECTS)],
                "scheduledStart": iso(iv.start_ms),
                "scheduledEnd": iso(iv.start_ms + iv.minutes * 60_000),
                "status": iv.status,
                "interviewers": self._panel(iv.interviewers),
                "location": None,
            }
            if not self.guessed:
                # the application's owner (its recruiter) books its interviews
                interview["stage"] = self.stages[state.job][iv.stage]
                interview["createdBy"] = self.users[state.owner]
            out.append(interview)
        return out

    def _panel(self, interviewers: tuple[int, ...]) -> list[dict[str, Any]]:
        """Interviewer objects; at most a few thousand distinct panels, so each is built once."""
        found = self._panels.get(interviewers)
        if found is None:
            found = self._panels[interviewers] = [self.users[u] for u in interviewers]
        return found

    def rejection(self, state: AppState, app_id: str) -> dict[str, Any] | None:
        if state.rejection is None:
            return None
        reason, at = state.rejection
        return {
            "id": f"{app_id}-rj",
            "reason": REJECTION_REASONS[reason % len(REJECTION_REASONS)],
            "rejectedAt": iso(at),
        }

    def offers(self, state: AppState, app_id: str) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{app_id}-of{k + 1}",
                "status": of.status,
                "createdAt": iso(of.created_ms),
                "sentAt": None if of.sent_ms is None else iso(of.sent_ms),
                "closedAt": None if of.closed_ms is None else iso(of.closed_ms),
                "startDate": None if of.status != "ACCEPTED" else iso(of.created_ms + 30 * 86_400_000)[:10],
            }
            for k, of in enumerate(state.offers)
        ]

    def attachments(self, state: AppState, app_id: str) -> list[dict[str, Any]]:
        expires = (state.updated_ms + LINK_LIFETIME_MS) // 1000
        out = []
        token = state.number * 2654435761
        for k in range(state.attachments):
            kind, stem, ext = ATTACHMENT_KINDS[k % len(ATTACHMENT_KINDS)]
            out.append(
                {
                    "id": f"{app_id}-at{k + 1}",
                    "type": kind,
                    "name": f"{stem}_{app_id}_{k + 1}.{ext}",
                    "link": f"{self._file_host}{app_id}/{k + 1}?expires={expires}"
                    f"&signature={(token + k) & 0xFFFFFFFF:08x}",
                }
            )
        return out
