"""Change the simulated ATS between runs: what a delta sync then reports.

A delta touches ``share`` of the live applications: most are modified the way a hiring pipeline
moves (a stage forward with its interview, a new interview, an offer, a rejection, a hire), some
are deleted, and new applications arrive. With three or more changes each kind occurs at least
once, so a small test data set still sees every event type. A delta of ``ats_jobs``
(``apply_job_delta``) edits, closes and opens jobs the same way.
"""

from __future__ import annotations

from knit_simulator.dataset import (
    BASE_MS,
    DELTA_STEP_MS,
    JOB_CLOSED,
    JOB_OPEN,
    MINUTE_MS,
    AppState,
    IntegrationData,
    Interview,
    JobState,
    Offer,
    past_interview_status,
    people,
)
from knit_simulator.rng import Rng, stable_hash
from knit_simulator.vocabulary import LOCATIONS, TITLE_PREFIXES

RECORD_NEW = "record.new"
RECORD_MODIFIED = "record.modified"
RECORD_DELETED = "record.deleted"


def apply_delta(data: IntegrationData, share: float) -> list[tuple[str, int]]:
    """Change the data set and return the changes as (event type, application index), in id order."""
    data.deltas += 1
    at = BASE_MS + data.deltas * DELTA_STEP_MS
    rng = Rng(stable_hash("delta", data.key, data.deltas))
    live = data.live_count()
    total = min(live, round(share * live)) if share > 0 else 0
    n_new = n_deleted = 0
    if total >= 3:
        n_new = max(1, round(total * 0.15))
        n_deleted = max(1, round(total * 0.10))
    n_modified = total - n_new - n_deleted

    chosen = _sample_live(data, rng, n_modified + n_deleted)
    changes: list[tuple[str, int]] = []
    for k, index in enumerate(chosen):
        state = data.state(index)
        when = at + rng.between(0, 300) * MINUTE_MS
        if k < n_deleted:
            data.overrides[index] = state._replace(deleted=True, updated_ms=when)
            changes.append((RECORD_DELETED, index))
        else:
            data.overrides[index] = _modify(data, state, rng, when)
            changes.append((RECORD_MODIFIED, index))
    hiring = data.hiring_jobs()
    for _ in range(n_new):
        index = data.count
        data.count += 1
        data.overrides[index] = data.new_application(index, at, hiring)
        changes.append((RECORD_NEW, index))
    changes.sort(key=lambda change: change[1])
    return changes


def _sample_live(data: IntegrationData, rng: Rng, n: int) -> list[int]:
    """``n`` distinct live application indices (deleted ones are skipped)."""
    picked: list[int] = []
    seen: set[int] = set()
    while len(picked) < n:
        index = rng.below(data.count)
        if index in seen:
            continue
        seen.add(index)
        if not data.state(index).deleted:
            picked.append(index)
    return picked


def _modify(data: IntegrationData, state: AppState, rng: Rng, when: int) -> AppState:
    """One step of a hiring pipeline; closed applications only get a new attachment."""
    job = data.jobs[state.job]
    interviews = tuple(
        iv._replace(status=past_interview_status(iv.start_ms, when))
        if iv.status in ("SCHEDULED", "AWAITING_FEEDBACK")
        else iv
        for iv in state.interviews
    )
    state = state._replace(interviews=interviews, updated_ms=when)
    if state.status != "ACTIVE":
        return state._replace(attachments=state.attachments + 1)
    roll = rng.below(100)
    if roll < 15:  # rejected
        return state._replace(
            status="REJECTED",
            rejection=(rng.below(1 << 16), when),
            interviews=tuple(
                iv._replace(status="CANCELLED") if iv.status == "SCHEDULED" else iv for iv in state.interviews
            ),
        )
    if state.stage >= job.offer_stage:
        if roll < 60:  # hired: the open offer is accepted
            offers = state.offers or (Offer(when - 3_600_000, when - 1_800_000, "SENT", None),)
            last = offers[-1]._replace(status="ACCEPTED", closed_ms=when)
            return state._replace(status="HIRED", stage=job.hired_stage, offers=(*offers[:-1], last))
        # the offer is declined and a revised one goes out
        offers = tuple(
            of._replace(status="DECLINED", closed_ms=when) if of.closed_ms is None else of for of in state.offers
        )
        return state._replace(offers=(*offers, Offer(when, when + 600_000, "SENT", None)))
    if roll < 35 and state.stage > 0:  # another interview in the same stage
        return state._replace(interviews=(*state.interviews, _interview(data, rng, when, state.stage)))
    stage = state.stage + 1  # moves forward
    if stage >= job.offer_stage:
        return state._replace(stage=job.offer_stage, offers=(*state.offers, Offer(when, when + 600_000, "SENT", None)))
    return state._replace(stage=stage, interviews=(*state.interviews, _interview(data, rng, when, stage)))


def _interview(data: IntegrationData, rng: Rng, when: int, stage: int) -> Interview:
    return data.make_interview(rng, when + rng.between(24 * 60, 5 * 24 * 60) * MINUTE_MS, "SCHEDULED", stage)


def apply_job_delta(data: IntegrationData, share: float) -> list[tuple[str, int]]:
    """Change the jobs and return the changes as (event type, job index), in id order.

    ``share`` of the open (not closed) jobs change, at least one when ``share`` > 0: most are edited,
    some close (Knit sends a closed job as ``record.deleted``) and new jobs open; with three or more
    changes each kind occurs at least once. Deltas of both data types share the source's clock.
    """
    data.deltas += 1
    at = BASE_MS + data.deltas * DELTA_STEP_MS
    rng = Rng(stable_hash("job-delta", data.key, data.deltas))
    live = data.live_jobs()
    total = min(len(live), max(1, round(share * len(live)))) if share > 0 else 0
    n_new = n_closed = 0
    if total >= 3:
        n_new = max(1, round(total * 0.15))
        n_closed = max(1, round(total * 0.10))
    chosen = _sample(live, rng, total - n_new)
    changes: list[tuple[str, int]] = []
    for k, number in enumerate(chosen):
        state = data.job_states[number]
        when = at + rng.between(0, 300) * MINUTE_MS
        if k < n_closed:
            data.job_states[number] = state._replace(status=JOB_CLOSED, closed_ms=when, updated_ms=when, posts=0)
            changes.append((RECORD_DELETED, number))
        else:
            data.job_states[number] = _edit_job(state, rng, when)
            changes.append((RECORD_MODIFIED, number))
    changes.extend((RECORD_NEW, data.add_job(rng, at)) for _ in range(n_new))
    changes.sort(key=lambda change: change[1])
    return changes


def _sample(items: list[int], rng: Rng, n: int) -> list[int]:
    """``n`` distinct items (a partial Fisher-Yates shuffle)."""
    pool = list(items)
    for k in range(n):
        swap = k + rng.below(len(pool) - k)
        pool[k], pool[swap] = pool[swap], pool[k]
    return pool[:n]


def _edit_job(state: JobState, rng: Rng, when: int) -> JobState:
    """One edit a recruiter makes to a job: its title, people, description, offices or publication."""
    state = state._replace(updated_ms=when)
    edit = rng.below(6)
    if edit == 0:
        prefix = next((p for p in TITLE_PREFIXES if state.title.startswith(p)), None)
        title = state.title.removeprefix(prefix) if prefix else rng.pick(TITLE_PREFIXES) + state.title
        return state._replace(title=title)
    if edit == 1:
        return state._replace(recruiters=people(rng))
    if edit == 2:
        return state._replace(hiring_managers=people(rng))
    if edit == 3:
        return state._replace(revision=state.revision + 1)
    if edit == 4:  # a second office added, or the job narrowed to its first
        office = rng.below(len(LOCATIONS))
        grown = (*state.offices, office) if office not in state.offices else state.offices
        return state._replace(offices=state.offices[:1] if len(state.offices) > 1 else grown)
    if state.status != JOB_OPEN:  # a draft (or unspecified) job is published
        return state._replace(status=JOB_OPEN, posts=max(1, state.posts))
    return state._replace(posts=state.posts + 1)  # posted on one more board
