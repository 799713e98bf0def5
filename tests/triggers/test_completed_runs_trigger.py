"""CompletedRunsTrigger against a real Postgres: each completed run announced once, across restarts and peers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import psycopg2
import pytest
from knit_landing_helpers import Lander, wait_for

from knit_provider.triggers.completed_runs import APPLICATION_NAME, CompletedRunsTrigger

T = TypeVar("T")


class Collector:
    """Drive a trigger in the background, as the triggerer does, and keep every payload it yields."""

    def __init__(self, trigger: CompletedRunsTrigger) -> None:
        self.prefix = f"{trigger.data_type}:"
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._collect(trigger))

    async def _collect(self, trigger: CompletedRunsTrigger) -> None:
        async for event in trigger.run():
            self.events.append(event.payload)

    @property
    def runs(self) -> list[str]:
        return [event["sync_run_id"].removeprefix(self.prefix) for event in self.events]

    async def until(self, count: int) -> None:
        async def enough() -> bool:
            if self._task.done():
                self._task.result()  # surface a crash instead of timing out
            return len(self.events) >= count

        await wait_for(enough, f"{count} announcements (have {self.runs})")

    async def stop(self) -> None:
        """What a triggerer shutdown does: cancel the task running the trigger."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
def typed_lander(landing_url: str) -> Iterator[Lander]:
    """A lander with a data type of its own, so each test's trigger sees only that test's runs."""
    lander = Lander(landing_url, data_type=f"type_{uuid.uuid4().hex[:8]}")
    try:
        yield lander
    finally:
        lander.close()


def run_id(lander: Lander, name: str) -> str:
    """Run ids are primary keys across the module's database: make each test's ids its own."""
    return f"{lander.data_type}:{name}"


def complete(lander: Lander, name: str, records: int = 2) -> None:
    run = run_id(lander, name)
    lander.records(f"job-{run}", run, records)
    lander.all_consumed(f"job-{run}", run, records)


def test_announces_each_completed_run_once_and_catches_up(typed_lander: Lander, landing_conn: str) -> None:
    lander = typed_lander
    complete(lander, "done-before-start", records=3)
    lander.records("job-open", run_id(lander, "still-open"), 1)
    complete(lander, "already-normalized")
    lander.execute(
        "UPDATE knit_landing.sync_runs SET normalized_at = now() WHERE sync_run_id = %s",
        (run_id(lander, "already-normalized"),),
    )
    other = Lander(landing_conn, data_type="other_type")
    other.all_consumed("job-o", run_id(lander, "other-type-run"), 0)
    other.close()

    async def scenario() -> tuple[list[str], list[dict[str, Any]]]:
        watcher = Collector(CompletedRunsTrigger(data_type=lander.data_type, poll_interval=60))
        await watcher.until(1)  # caught up with the run completed while it was not running
        lander.all_consumed("job-open", run_id(lander, "still-open"), 1)  # NOTIFY wakes it: the poll is a minute away
        await watcher.until(2)
        complete(lander, "sentinel")  # any repeat would be claimed before the sentinel
        await watcher.until(3)
        await watcher.stop()
        return watcher.runs, watcher.events

    runs, events = asyncio.run(scenario())
    assert runs == ["done-before-start", "still-open", "sentinel"]
    first, done = events[0], run_id(lander, "done-before-start")
    assert first == {
        "sync_run_id": done,
        "sync_job_id": f"job-{done}",
        "integration_id": "int-1",
        "data_type": lander.data_type,
        "sync_type": "delta_sync",
        "record_events": 3,
        "processed": 3,
        "emitted": 3,
        "consumed": 3,
        "first_seq": first["first_seq"],
        "all_consumed_at": first["all_consumed_at"],
        "complete_at": first["all_consumed_at"],
        "completed_by": "allConsumed",
        "announced_at": first["announced_at"],
    }
    with lander.conn, lander.conn.cursor() as cur:
        cur.execute(
            "SELECT sync_run_id FROM knit_landing.sync_runs WHERE sync_data_type = %s "
            "AND announced_at IS NOT NULL ORDER BY 1",
            (lander.data_type,),
        )
        assert [row[0] for row in cur.fetchall()] == [
            run_id(lander, name) for name in ("done-before-start", "sentinel", "still-open")
        ]


def test_a_restarted_trigger_announces_what_completed_while_down_and_nothing_twice(
    typed_lander: Lander, landing_conn: str
) -> None:
    lander = typed_lander

    async def scenario() -> tuple[list[str], list[str]]:
        before = Collector(CompletedRunsTrigger(data_type=lander.data_type, poll_interval=60))
        complete(lander, "first")
        await before.until(1)
        await before.stop()
        complete(lander, "while-down")
        after = Collector(
            CompletedRunsTrigger(**CompletedRunsTrigger(data_type=lander.data_type, poll_interval=60).serialize()[1])
        )
        await after.until(1)
        complete(lander, "sentinel")
        await after.until(2)
        await after.stop()
        return before.runs, after.runs

    before, after = asyncio.run(scenario())
    assert before == ["first"]
    assert after == ["while-down", "sentinel"]


def listening_backends(url: str) -> bool:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'idle' "
            "AND query LIKE '%%sync_runs%%'",
            (APPLICATION_NAME,),
        )
        count = cur.fetchone()[0]
    conn.close()
    return count >= 2


class OtherTriggerer:
    """A second triggerer: its own thread and event loop, hence its own shared listening connection."""

    def __init__(self, trigger: CompletedRunsTrigger) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.collector = self._call(self._start(trigger))

    @staticmethod
    async def _start(trigger: CompletedRunsTrigger) -> Collector:
        return Collector(trigger)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def stop(self) -> None:
        self._call(self.collector.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


def test_two_triggerers_announce_each_run_exactly_once(typed_lander: Lander, landing_conn: str) -> None:
    lander = typed_lander
    runs = [f"run-{i:02d}" for i in range(40)]

    async def scenario() -> list[str]:
        here = Collector(CompletedRunsTrigger(data_type=lander.data_type, poll_interval=60))
        there = OtherTriggerer(CompletedRunsTrigger(data_type=lander.data_type, poll_interval=60))
        peers = [here, there.collector]
        try:
            for run in runs:
                lander.records(f"job-{run}", run_id(lander, run), 1)
            await wait_for(lambda: asyncio.to_thread(listening_backends, landing_conn), "both triggerers listening")
            # One transaction completes them all: both triggerers wake on the same commit and claim at once.
            lander.land(
                [
                    lander.event("sync.events.allConsumed", f"job-{run}", run_id(lander, run), {"consumed": "1"})
                    for run in runs
                ]
            )

            async def all_announced() -> bool:
                return sum(len(peer.events) for peer in peers) >= len(runs)

            await wait_for(all_announced, "every run announced by one of the two triggerers")
            complete(lander, "sentinel")
            await wait_for(lambda: asyncio.sleep(0, any("sentinel" in peer.runs for peer in peers)), "the sentinel")
        finally:
            await here.stop()
            there.stop()
        return [run for peer in peers for run in peer.runs]

    announced = asyncio.run(scenario())
    assert sorted(announced) == sorted([*runs, "sentinel"])


@pytest.mark.parametrize("reannounce_after", [3600.0, None])
def test_a_run_left_unnormalized_is_announced_again_after_the_lease(
    typed_lander: Lander, landing_conn: str, reannounce_after: float | None
) -> None:
    lander = typed_lander
    backdate = "UPDATE knit_landing.sync_runs SET announced_at = now() - interval '2 hours' WHERE sync_run_id = %s"

    async def scenario() -> list[str]:
        watcher = Collector(
            CompletedRunsTrigger(data_type=lander.data_type, poll_interval=0.2, reannounce_after=reannounce_after)
        )
        complete(lander, "failed-dag-run")
        await watcher.until(1)
        lander.execute(backdate, (run_id(lander, "failed-dag-run"),))  # its DAG run failed two hours ago
        if reannounce_after is not None:
            await watcher.until(2)
        lander.execute(
            "UPDATE knit_landing.sync_runs SET normalized_at = now() WHERE sync_run_id = %s",
            (run_id(lander, "failed-dag-run"),),
        )
        lander.execute(backdate, (run_id(lander, "failed-dag-run"),))  # normalized now: never again, however old
        complete(lander, "sentinel")
        await wait_for(lambda: asyncio.sleep(0, "sentinel" in watcher.runs), "the sentinel")
        await watcher.stop()
        return watcher.runs

    runs = asyncio.run(scenario())
    if reannounce_after is None:
        assert runs == ["failed-dag-run", "sentinel"]
    else:
        assert runs == ["failed-dag-run", "failed-dag-run", "sentinel"]


def test_serialize_round_trip() -> None:
    trigger = CompletedRunsTrigger(
        data_type="ats_applications", landing_conn_id="landing", poll_interval=30, reannounce_after=None
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "knit_provider.triggers.completed_runs.CompletedRunsTrigger"
    assert CompletedRunsTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert kwargs == {
        "data_type": "ats_applications",
        "landing_conn_id": "landing",
        "poll_interval": 30.0,
        "reannounce_after": None,
    }


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"reannounce_after": 0}, "reannounce_after"),
    ],
)
def test_refuses_bad_intervals(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        CompletedRunsTrigger(**kwargs)
