"""Announce every completed sync run to an ``AssetWatcher``, once, so a DAG normalizes it as soon as it lands.

Knit starts delta syncs on its own schedule; no Airflow task is waiting for those runs. This trigger
watches the landing store instead: each run whose ``sync.events.allConsumed`` has landed and that is
not yet normalized becomes one trigger event, and thus one asset event and one DAG run.

Once, durably: a run is claimed by setting ``sync_runs.announced_at`` in the same statement that
selects it (see ``sql/landing/claim_completed_runs.sql``), so a restarted triggerer, or two triggerers
running the same watcher, never announce a run twice, and runs completed while no triggerer was up are
announced when one starts. Normalization sets ``normalized_at``; from then on the run is never announced
again.

Lost announcements: the claim commits just before the event is handed to the triggerer, so a triggerer
killed in between, or a DAG run that fails, leaves a run announced but not normalized; and Airflow may
leave an asset event that arrives while the DAG is at ``max_active_runs`` queued until another event
comes (apache/airflow#56050), which with Knit's own schedule can be hours. After ``reannounce_after``
seconds (default 15 minutes) such a run is announced again, once per period, until normalization marks
it; a run normalized meanwhile is passed over (``skip_normalized``), so a slow DAG run that overlaps a
re-announcement costs a short DAG run, not correctness. ``reannounce_after=None`` turns this off; then
a lost run waits for a backfill or ``normalize --pending``.

Reading the payload in the watcher's DAG: ``triggering_asset_events[asset][0].extra["payload"]`` is the
dict built by :func:`announcement`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from knit_provider.exceptions import KnitInputError
from knit_provider.landing.runs import aclaim_completed_runs
from knit_provider.settings import (
    ATS_APPLICATIONS,
    DEFAULT_LANDING_CONN_ID,
    EVENT_ALL_CONSUMED,
    EVENT_PROCESSED,
)
from knit_provider.triggers.listener import APPLICATION_NAME, watch_claims

__all__ = ["APPLICATION_NAME", "CompletedRunsTrigger", "announcement"]
DEFAULT_REANNOUNCE_AFTER = 15 * 60.0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def announcement(row: dict[str, Any]) -> dict[str, Any]:
    """The event payload of one claimed run: what the normalizing DAG needs, as plain JSON values."""
    return {
        "sync_run_id": row["sync_run_id"],
        "sync_job_id": row["sync_job_id"],
        "integration_id": row["integration_id"],
        "data_type": row["sync_data_type"],
        "sync_type": row["sync_type"],
        "record_events": row["record_events"],
        "processed": row["processed_count"],
        "emitted": row["emitted_count"],
        "consumed": row["consumed_count"],
        "first_seq": row["first_seq"],
        "all_consumed_at": _iso(row["all_consumed_at"]),
        "complete_at": _iso(row["complete_at"]),
        "completed_by": row["completed_by"],
        "announced_at": _iso(row["announced_at"]),
    }


class CompletedRunsTrigger(BaseEventTrigger):
    """Fire one event per completed, not yet normalized run of ``data_type``; runs for ever.

    :param data_type: Knit's ``syncDataType`` to watch.
    :param landing_conn_id: Airflow connection of the landing database.
    :param poll_interval: seconds between backup checks; a landed allConsumed wakes it at once via NOTIFY.
    :param reannounce_after: seconds after which a run announced but still not normalized is announced
        again (``None``: never); see the module docstring.
    """

    def __init__(
        self,
        *,
        data_type: str = ATS_APPLICATIONS,
        landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
        poll_interval: float = 60.0,
        reannounce_after: float | None = DEFAULT_REANNOUNCE_AFTER,
    ) -> None:
        super().__init__()
        if poll_interval <= 0:
            raise KnitInputError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        if reannounce_after is not None and reannounce_after <= 0:
            raise KnitInputError(
                "reannounce_after must be a positive number of seconds, or None to never "
                f"re-announce, got {reannounce_after!r}"
            )
        self.data_type = data_type
        self.landing_conn_id = landing_conn_id
        self.poll_interval = float(poll_interval)
        self.reannounce_after = None if reannounce_after is None else float(reannounce_after)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "data_type": self.data_type,
                "landing_conn_id": self.landing_conn_id,
                "poll_interval": self.poll_interval,
                "reannounce_after": self.reannounce_after,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # A final processed report that emitted nothing completes a run too (see 0002_knit_edge_cases.sql).
        batches = watch_claims(
            self.landing_conn_id,
            (EVENT_ALL_CONSUMED, EVENT_PROCESSED),
            self.poll_interval,
            aclaim_completed_runs,
            self.data_type,
            self.reannounce_after,
            what=f"completed {self.data_type} runs",
            log=self.log,
        )
        # One run per claim: a triggerer stopped between claim and hand-over loses at most one
        # announcement, and that one comes back after reannounce_after.
        async for claimed in batches:
            for row in claimed:
                self.log.info(
                    "Run %s of job %s completed (%s record events): announcing it",
                    row["sync_run_id"],
                    row["sync_job_id"],
                    row["record_events"],
                )
                yield TriggerEvent(announcement(row))
