"""What a run reads: the records of one simulated data type of one integration, behind one interface.

Delivery (``events.py``, ``delivery.py``) is the same for every data type; a ``Source`` says which
records exist, how a delta changes them, how each renders, and what a receiver of every event holds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Protocol

from knit_simulator.config import SIMULATED_DATA_TYPES
from knit_simulator.dataset import BASE_MS, JOB_CLOSED, IntegrationData
from knit_simulator.delta import apply_delta, apply_job_delta
from knit_simulator.render import ALL_MODELS, Renderer
from knit_simulator.render_jobs import JOB_MODELS, JobRenderer

ATS_APPLICATIONS, ATS_JOBS = SIMULATED_DATA_TYPES
# Each simulated data type and its model ids (all of them: a job's subscription when none is given).
SIMULATED_MODELS: dict[str, tuple[str, ...]] = {ATS_APPLICATIONS: ALL_MODELS, ATS_JOBS: JOB_MODELS}
# record.deleted as Knit's applications page prints it: the ids blank, the record's own in recordId.
EMPTY_DELETED_DATA: dict[str, str] = {"applicationId": "", "candidateId": "", "jobId": ""}


class Source(Protocol):
    """The records of one data type; an index names a record within it."""

    def live_indices(self) -> Sequence[int]:
        """Records an initial sync sends (the active ones), in id order."""

    def inactive_indices(self) -> list[int]:
        """Inactive records the source still holds: an initial sync with includeInactiveRecords sends them too."""

    def live_count(self) -> int: ...

    def apply_delta(self, share: float) -> list[tuple[str, int]]:
        """Change the source; the changes as (event type, index), in id order."""

    def record_id(self, index: int) -> str: ...

    def event_data(self, index: int, models: Collection[str]) -> dict[str, Any]: ...

    def deleted_data(self, index: int) -> dict[str, Any]: ...

    def truth(self, models: Iterable[str], resent: set[int]) -> dict[str, Any]:
        """What a receiver of every event holds (``resent``: inactive records an initial sync re-sent)."""


class Applications:
    """``ats_applications``: the seeded applications of ``dataset.py``."""

    def __init__(self, data: IntegrationData, renderer: Renderer, empty_deleted_ids: bool = False) -> None:
        self.data = data
        self.renderer = renderer
        self.empty_deleted_ids = empty_deleted_ids

    def live_indices(self) -> Sequence[int]:
        return self.data.live_indices()

    def inactive_indices(self) -> list[int]:
        return self.data.inactive_indices()

    def live_count(self) -> int:
        return self.data.live_count()

    def apply_delta(self, share: float) -> list[tuple[str, int]]:
        return apply_delta(self.data, share)

    def record_id(self, index: int) -> str:
        return self.data.application_id(index)

    def event_data(self, index: int, models: Collection[str]) -> dict[str, Any]:
        return self.renderer.event_data(self.data.state(index), models)

    def deleted_data(self, index: int) -> dict[str, Any]:
        if self.empty_deleted_ids:
            return EMPTY_DELETED_DATA
        return self.renderer.deleted_data(self.data.state(index))

    def truth(self, models: Iterable[str], resent: set[int]) -> dict[str, Any]:
        """Live applications' eventData, deleted ones' ids (as they were), and which deleted ones are inactive.

        An inactive application is deleted (its inactivation sent record.deleted) unless an initial
        sync of the integration's job with includeInactiveRecords sent it as record.new since.
        """
        data, renderer = self.data, self.renderer
        chosen = frozenset(models)
        live: dict[str, Any] = {}
        deleted: dict[str, Any] = {}
        inactive: list[str] = []
        for index in range(data.count):
            state = data.state(index)
            app_id = data.application_id(index)
            if state.deleted and data.inactive(index):
                inactive.append(app_id)
            if state.deleted and index not in resent:
                deleted[app_id] = renderer.deleted_data(state)
            else:
                live[app_id] = renderer.event_data(state, chosen)
        return {
            "integrationId": data.integration_id,
            "dataType": ATS_APPLICATIONS,
            "models": sorted(chosen),
            "count": len(live),
            "applications": live,
            "deleted": deleted,
            "inactive": inactive,
        }


class Jobs:
    """``ats_jobs``: the jobs the applications belong to; a closed job is inactive, never removed."""

    def __init__(self, data: IntegrationData, renderer: Renderer, jobs: JobRenderer) -> None:
        self.data = data
        self.renderer = renderer
        self.jobs = jobs

    def live_indices(self) -> Sequence[int]:
        return self.data.live_jobs()

    def inactive_indices(self) -> list[int]:
        return self.data.closed_jobs()

    def live_count(self) -> int:
        return len(self.data.live_jobs())

    def apply_delta(self, share: float) -> list[tuple[str, int]]:
        changes = apply_job_delta(self.data, share)
        self.renderer.refresh_jobs()  # new applications may go to the jobs just opened
        return changes

    def record_id(self, index: int) -> str:
        return self.jobs.job_id(index)

    def event_data(self, index: int, models: Collection[str]) -> dict[str, Any]:
        return self.jobs.event_data(self.data.job_states[index], models)

    def deleted_data(self, index: int) -> dict[str, Any]:
        return self.jobs.deleted_data(self.data.job_states[index])

    def truth(self, models: Iterable[str], resent: set[int]) -> dict[str, Any]:
        """Live jobs' eventData, and the closed jobs a record.deleted announced (a delta closed them).

        A job closed before any sync was never sent (initial syncs skip inactive records), so it is
        in neither, only in ``inactive`` (every closed job); one an initial sync with
        includeInactiveRecords sent is live, as the receiver holds it.
        """
        chosen = frozenset(models)
        live: dict[str, Any] = {}
        deleted: dict[str, Any] = {}
        inactive: list[str] = []
        for number, state in enumerate(self.data.job_states):
            job_id = self.jobs.job_id(number)
            closed = state.status == JOB_CLOSED
            if closed:
                inactive.append(job_id)
            if not closed or number in resent:
                live[job_id] = self.jobs.event_data(state, chosen)
            elif state.closed_ms is not None and state.closed_ms > BASE_MS:  # closed by a delta, which said so
                deleted[job_id] = self.jobs.deleted_data(state)
        return {
            "integrationId": self.data.integration_id,
            "dataType": ATS_JOBS,
            "models": sorted(chosen),
            "count": len(live),
            "jobs": live,
            "deleted": deleted,
            "inactive": inactive,
        }
