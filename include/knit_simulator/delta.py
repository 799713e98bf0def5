"""Change the simulated ATS between runs: what a delta sync then reports.

A delta touches ``share`` of the live applications: most are modified the way a hiring pipeline
moves (a stage forward with its interview, a new interview, an offer, a rejection, a hire), some
are deleted, and new applications arrive. With three or more changes each kind occurs at least
once, so a small test data set still sees every event type.
"""

from __future__ import annotations

from knit_simulator.dataset import (
    BASE_MS,
    DELTA_STEP_MS,
    MINUTE_MS,
    AppState,
    IntegrationData,
    Interview,
    Offer,
    past_interview_status,
)
from knit_simulator.rng import Rng, stable_hash

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
    for _ in range(n_new):
        index = data.count
        data.count += 1
        data.overrides[index] = data.new_application(index, at)
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
