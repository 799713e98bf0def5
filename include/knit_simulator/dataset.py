"""The simulated ATS of one integration: seeded applications, generated on demand, changed by deltas.

An application is a small ``AppState`` (stage, status, times, interview and offer tuples). The
state of application ``i`` before any delta is a pure function of (seed, integration id, i), so
a million applications cost no memory until a delta changes one; only changed, new and deleted
applications are stored (``overrides``). ``render.py`` turns a state into Knit's ``eventData``.

Jobs are few (at most ``MAX_JOBS``), so each has its ``JobState`` held outright; every
application's job is one of them, and a job is never removed (a closed one stays, ``CLOSED``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

from knit_simulator.rng import Rng, mix, stable_hash
from knit_simulator.vocabulary import INTERVIEW_DURATIONS_MIN, JOB_TITLES, LOCATIONS, PIPELINES, TITLE_DEPARTMENTS

# The simulated ATS's "now" before any delta; fixed so the same seed gives the same data.
BASE_MS = int(datetime(2025, 6, 2, tzinfo=timezone.utc).timestamp() * 1000)
MINUTE_MS = 60_000
DAY_MS = 86_400_000
DELTA_STEP_MS = 6 * 3_600_000  # each delta run happens six simulated hours after the previous one
SHARED_CANDIDATE_PERCENT = 15  # share of applications whose candidate also applied to another job
USERS = 40
APPLICATIONS_PER_JOB = 120
MAX_JOBS = 300  # a million applications still come from a few hundred jobs
JOB_CLOSED, JOB_OPEN = "CLOSED", "OPEN"


FEEDBACK_MS = 2 * DAY_MS  # an interview that ended less than this ago still awaits feedback


class Interview(NamedTuple):
    start_ms: int
    minutes: int
    status: str  # SCHEDULED | AWAITING_FEEDBACK | COMPLETE | CANCELLED (Knit's enum)
    subject: int
    interviewers: tuple[int, ...]
    stage: int  # index of the stage (in its job's pipeline) the interview belongs to


class Offer(NamedTuple):
    created_ms: int
    sent_ms: int | None
    status: str  # DRAFT | SENT | ACCEPTED | DECLINED
    closed_ms: int | None


class AppState(NamedTuple):
    """Everything that varies about one application; the rest is derived from its index.

    Named tuples rather than dataclasses: a run builds one per application, and they are cheaper.
    """

    number: int
    job: int
    candidate: int
    stage: int
    status: str  # ACTIVE | REJECTED | HIRED
    origin: int
    owner: int
    credited: int | None
    applied_ms: int
    updated_ms: int
    interviews: tuple[Interview, ...] = ()
    offers: tuple[Offer, ...] = ()
    rejection: tuple[int, int] | None = None  # (reason index, rejected at)
    attachments: int = 0
    deleted: bool = False


def past_interview_status(start_ms: int, now_ms: int) -> str:
    """The status of an interview that was not cancelled, as of ``now_ms``."""
    if start_ms >= now_ms:
        return "SCHEDULED"
    return "AWAITING_FEEDBACK" if now_ms - start_ms < FEEDBACK_MS else "COMPLETE"


def offset_minutes(draw: int) -> int:
    """A spread of up to a day, reusing a draw already made (one fewer generator call)."""
    return draw % (24 * 60)


@dataclass(frozen=True, slots=True)
class JobInfo:
    job_id: str
    title: int
    pipeline: tuple[str, ...]
    label_key: str  # some ATSs call a stage's label "name", others "text"
    stage_ids: tuple[str, ...]

    @property
    def offer_stage(self) -> int:
        return len(self.pipeline) - 2

    @property
    def hired_stage(self) -> int:
        return len(self.pipeline) - 1


class JobState(NamedTuple):
    """Everything about one job a delta may change (its id and pipeline are its ``JobInfo``)."""

    number: int
    title: str
    status: str  # OPEN | CLOSED | DRAFT | NOT_SPECIFIED (Knit's enum); CLOSED is inactive
    confidential: bool
    created_ms: int
    updated_ms: int
    closed_ms: int | None
    departments: tuple[int, ...]  # indices into DEPARTMENTS
    offices: tuple[int, ...]  # indices into LOCATIONS (one office per city)
    hiring_managers: tuple[int, ...]  # user indices, as application owners are
    recruiters: tuple[int, ...]
    posts: int  # job posts on boards
    revision: int = 0  # edits of the description


def people(rng: Rng) -> tuple[int, ...]:
    """One or two users."""
    first, second, two = rng.many(USERS, USERS, 4)
    return tuple(sorted({first, second})) if two == 0 else (first,)


def job_state(key: int, number: int, title: int, created_ms: int, status: str) -> JobState:
    """A job as it is created: its title (an index into JOB_TITLES) decides its department."""
    rng = Rng(key ^ 0x10B5 + number * 0x9E3779B97F4A7C15)
    no_department, office, second_office, two_offices, confidential, posts = rng.many(
        10, len(LOCATIONS), len(LOCATIONS), 5, 10, 3
    )
    kind = title % len(JOB_TITLES)
    offices = (office,) if two_offices or second_office == office else (office, second_office)
    return JobState(
        number=number,
        title=JOB_TITLES[kind],
        status=status,
        confidential=confidential == 0,
        created_ms=created_ms,
        updated_ms=created_ms,
        closed_ms=None,
        departments=() if no_department == 0 else (TITLE_DEPARTMENTS[kind],),
        offices=offices,
        hiring_managers=people(rng),
        recruiters=people(rng),
        posts=0 if status != JOB_OPEN else posts,
    )


def base_job_status(key: int, number: int) -> str:
    """Job 0 is open and job 1 closed, so any data set has both; the rest mostly open."""
    if number < 2:
        return (JOB_OPEN, JOB_CLOSED)[number]
    roll = mix(key ^ 0x57A7 + number) % 100
    return JOB_CLOSED if roll < 15 else "DRAFT" if roll < 22 else "NOT_SPECIFIED" if roll < 25 else JOB_OPEN


@dataclass
class IntegrationData:
    """The source system of one integration as the simulator holds it."""

    seed: int
    integration_id: str
    base_count: int
    key: int = 0
    count: int = 0
    deltas: int = 0
    overrides: dict[int, AppState] = field(default_factory=dict)
    jobs: list[JobInfo] = field(default_factory=list)
    job_states: list[JobState] = field(default_factory=list)
    base_jobs: int = 0  # jobs before any delta: the applications' seeded jobs are among these

    def __post_init__(self) -> None:
        self.key = stable_hash("knit-simulator", self.seed, self.integration_id)
        self.count = self.base_count
        rng = Rng(self.key ^ 0x4A0B5)
        self.jobs = []
        self.base_jobs = min(MAX_JOBS, max(3, self.base_count // APPLICATIONS_PER_JOB))
        for _ in range(self.base_jobs):
            self.jobs.append(self._job_info(rng))
        for j, job in enumerate(self.jobs):
            created = BASE_MS - (200 + mix(self.key ^ 0xC4EA + j) % 200) * DAY_MS
            state = job_state(self.key, j, job.title, created, base_job_status(self.key, j))
            if state.status == JOB_CLOSED:
                closed = created + (30 + mix(self.key ^ 0xC105 + j) % 150) * DAY_MS
                state = state._replace(closed_ms=closed, updated_ms=closed)
            self.job_states.append(state)

    def _job_info(self, rng: Rng) -> JobInfo:
        """The next job's id, title and pipeline (the draws the applications' data depend on)."""
        p = rng.below(len(PIPELINES))
        job_id = str(4_100_000 + (self.key % 1000) * 10_000 + len(self.jobs))
        return JobInfo(
            job_id=job_id,
            title=rng.below(1 << 16),
            pipeline=PIPELINES[p],
            label_key="name" if rng.chance(0.5) else "text",
            stage_ids=tuple(f"{job_id}-{k + 1}" for k in range(len(PIPELINES[p]))),
        )

    def add_job(self, rng: Rng, at_ms: int) -> int:
        """A job opened just before delta time ``at_ms``; returns its index."""
        job = self._job_info(rng)
        self.jobs.append(job)
        number = len(self.jobs) - 1
        created = at_ms - rng.between(5, 300) * MINUTE_MS
        self.job_states.append(job_state(self.key, number, job.title, created, JOB_OPEN))
        return number

    def live_jobs(self) -> list[int]:
        """Indices of the jobs that are not closed (a closed job is inactive: Knit sends it as deleted)."""
        return [j for j, state in enumerate(self.job_states) if state.status != JOB_CLOSED]

    def closed_jobs(self) -> list[int]:
        return [j for j, state in enumerate(self.job_states) if state.status == JOB_CLOSED]

    def hiring_jobs(self) -> Sequence[int]:
        """The jobs a new application may go to: the open ones; should none be open, any (it still exists)."""
        return [j for j, state in enumerate(self.job_states) if state.status == JOB_OPEN] or range(len(self.jobs))

    # ---- identity -------------------------------------------------------------------------
    def application_id(self, index: int) -> str:
        return str(80_000_000 + index)

    def candidate_id(self, candidate: int) -> str:
        return str(50_000_000 + candidate)

    def candidate_of(self, index: int) -> int:
        """Some candidates apply to several jobs: an application may share the previous one's."""
        while index > 0 and mix(self.key ^ 0xCA4D + index) % 100 < SHARED_CANDIDATE_PERCENT:
            index -= 1
        return index

    # ---- state ----------------------------------------------------------------------------
    def state(self, index: int) -> AppState:
        found = self.overrides.get(index)
        return found if found is not None else self.base_state(index)

    def live_indices(self) -> list[int] | range:
        """Indices of the applications that exist now, in id order."""
        if not any(s.deleted for s in self.overrides.values()):
            return range(self.count)
        deleted = {i for i, s in self.overrides.items() if s.deleted}
        return [i for i in range(self.count) if i not in deleted]

    def live_count(self) -> int:
        return self.count - sum(1 for s in self.overrides.values() if s.deleted)

    def base_state(self, index: int) -> AppState:
        """Application ``index`` as it stood before any delta (a pure function of the seed)."""
        rng = Rng(self.key + index * 0x632BE59BD9B4E019)
        (
            job_index,
            roll,
            s1,
            s2,
            applied_min,
            origin,
            owner,
            credit_roll,
            credited,
            files,
            file_roll,
            reason,
            offer_roll,
        ) = rng.many(
            self.base_jobs, 100, 1 << 12, 1 << 12, 198 * 24 * 60, 1 << 16, USERS, 10, USERS, 3, 10, 1 << 16, 10
        )
        job = self.jobs[job_index]
        offer_stage, hired_stage = job.offer_stage, job.hired_stage
        if roll < 12:
            status, stage = "REJECTED", s1 % max(1, offer_stage)
        elif roll < 17:
            status, stage = "HIRED", hired_stage
        else:
            status, stage = "ACTIVE", min(s1 % hired_stage, s2 % hired_stage)
        applied = BASE_MS - (2 * 24 * 60 + applied_min) * MINUTE_MS
        t = updated = applied
        interviews: list[Interview] = []
        for k in range(1, stage + 1):
            gap, offset, cancel = rng.many(5 * 24 * 60, 3 * 24 * 60, 20)
            t += (24 * 60 + gap) * MINUTE_MS
            updated = t
            if k < offer_stage:
                start = t + (60 + offset) * MINUTE_MS
                done = "CANCELLED" if cancel == 0 else past_interview_status(start, BASE_MS)
                interviews.append(self.make_interview(rng, start, done, k))
                if done != "SCHEDULED":
                    updated = max(updated, start)
        offers: tuple[Offer, ...] = ()
        if stage >= offer_stage:
            created = t - (60 + offset_minutes(reason)) * MINUTE_MS
            if status == "HIRED":
                offers = (Offer(created, created + 3_600_000, "ACCEPTED", t),)
            elif offer_roll < 3:
                offers = (Offer(created, None, "DRAFT", None),)
            else:
                offers = (Offer(created, created + 3_600_000, "SENT", None),)
        rejection = None
        if status == "REJECTED":
            t += (60 + offset_minutes(reason)) * MINUTE_MS
            updated = t
            rejection = (reason, t)
        return AppState(
            index,
            job_index,
            self.candidate_of(index),
            stage,
            status,
            origin,
            owner,
            credited if credit_roll < 4 else None,
            applied,
            min(updated, BASE_MS),
            tuple(interviews),
            offers,
            rejection,
            files + (1 if file_roll < 6 else 0),
        )

    def make_interview(self, rng: Rng, start_ms: int, status: str, stage: int) -> Interview:
        count, a, b, c, minutes, subject = rng.many(3, USERS, USERS, USERS, len(INTERVIEW_DURATIONS_MIN), 1 << 16)
        people = tuple(sorted(set((a, b, c)[: count + 1])))
        return Interview(start_ms, INTERVIEW_DURATIONS_MIN[minutes], status, subject, people, stage)

    def inactive(self, index: int) -> bool:
        """Whether a deleted application was marked inactive in the source (else it was removed).

        A fixed half of the deletions, by index, so the split is the same in every run and process.
        """
        return mix(self.key ^ 0x1AC7 + index) % 2 == 0

    def inactive_indices(self) -> list[int]:
        """Deleted applications the source still holds as inactive, in id order."""
        return sorted(i for i, s in self.overrides.items() if s.deleted and self.inactive(i))

    def new_application(self, index: int, at_ms: int, hiring: Sequence[int]) -> AppState:
        """A fresh application to one of the ``hiring`` jobs that arrived just before delta time ``at_ms``."""
        rng = Rng(self.key ^ 0x5EED + index * 0x9E3779B1)
        applied = at_ms - rng.between(5, 300) * MINUTE_MS
        return AppState(
            number=index,
            job=hiring[rng.below(len(hiring))],
            candidate=self.candidate_of(index),
            stage=0,
            status="ACTIVE",
            origin=rng.below(1 << 16),
            owner=rng.below(USERS),
            credited=rng.below(USERS) if rng.chance(0.4) else None,
            applied_ms=applied,
            updated_ms=applied,
            attachments=1 + rng.below(2),
        )
