"""The simulated ATS of one integration: seeded applications, generated on demand, changed by deltas.

An application is a small ``AppState`` (stage, status, times, interview and offer tuples). The
state of application ``i`` before any delta is a pure function of (seed, integration id, i), so
a million applications cost no memory until a delta changes one; only changed, new and deleted
applications are stored (``overrides``). ``render.py`` turns a state into Knit's ``eventData``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

from knit_simulator.rng import Rng, mix, stable_hash
from knit_simulator.vocabulary import INTERVIEW_DURATIONS_MIN, PIPELINES

# The simulated ATS's "now" before any delta; fixed so the same seed gives the same data.
BASE_MS = int(datetime(2025, 6, 2, tzinfo=timezone.utc).timestamp() * 1000)
MINUTE_MS = 60_000
DAY_MS = 86_400_000
DELTA_STEP_MS = 6 * 3_600_000  # each delta run happens six simulated hours after the previous one
SHARED_CANDIDATE_PERCENT = 15  # share of applications whose candidate also applied to another job
USERS = 40


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

    def __post_init__(self) -> None:
        self.key = stable_hash("knit-simulator", self.seed, self.integration_id)
        self.count = self.base_count
        rng = Rng(self.key ^ 0x4A0B5)
        self.jobs = []
        for j in range(max(3, self.base_count // 120)):
            p = rng.below(len(PIPELINES))
            job_id = str(4_100_000 + (self.key % 1000) * 10_000 + j)
            self.jobs.append(
                JobInfo(
                    job_id=job_id,
                    title=rng.below(1 << 16),
                    pipeline=PIPELINES[p],
                    label_key="name" if rng.chance(0.5) else "text",
                    stage_ids=tuple(f"{job_id}-{k + 1}" for k in range(len(PIPELINES[p]))),
                )
            )

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
            len(self.jobs), 100, 1 << 12, 1 << 12, 198 * 24 * 60, 1 << 16, USERS, 10, USERS, 3, 10, 1 << 16, 10
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

    def new_application(self, index: int, at_ms: int) -> AppState:
        """A fresh application that arrived just before delta time ``at_ms``."""
        rng = Rng(self.key ^ 0x5EED + index * 0x9E3779B1)
        applied = at_ms - rng.between(5, 300) * MINUTE_MS
        return AppState(
            number=index,
            job=rng.below(len(self.jobs)),
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
