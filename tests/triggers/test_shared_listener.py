"""Many Knit triggers in one event loop (one triggerer) share one connection to the landing database."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

import psycopg2
import pytest
from knit_landing_helpers import Lander, ids, wait_for

from knit_provider.triggers.all_consumed import AllConsumedTrigger
from knit_provider.triggers.completed_runs import CompletedRunsTrigger
from knit_provider.triggers.listener import APPLICATION_NAME, SharedListener, shared_listener

SLOW_POLL = 60.0


def backends(url: str) -> list[int]:
    """The pids of the shared listening connections (of any loop) on the landing database."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid", (APPLICATION_NAME,))
        pids = [row[0] for row in cur.fetchall()]
    conn.close()
    return pids


class Waiting:
    """``count`` AllConsumedTriggers, one per run, running as tasks of this loop as the triggerer runs them."""

    def __init__(self, prefix: str, count: int, poll_interval: float = SLOW_POLL) -> None:
        self.job, run = ids(prefix)
        self.runs = [f"{run}-{i:04d}" for i in range(count)]
        self.tasks = {
            run: asyncio.create_task(
                self._event(
                    AllConsumedTrigger(sync_job_id=self.job, sync_run_id=run, poll_interval=poll_interval, timeout=300)
                )
            )
            for run in self.runs
        }

    @staticmethod
    async def _event(trigger: AllConsumedTrigger) -> dict[str, Any]:
        events = trigger.run()
        first = await anext(events)
        with pytest.raises(StopAsyncIteration):
            await anext(events)
        return dict(first.payload)

    def done(self) -> list[str]:
        return [run for run, task in self.tasks.items() if task.done()]

    async def results(self) -> dict[str, dict[str, Any]]:
        await asyncio.wait_for(asyncio.gather(*self.tasks.values()), 30)
        return {run: task.result() for run, task in self.tasks.items()}


def listener(url: str) -> SharedListener:
    found = shared_listener(url)
    assert found is not None, "no shared listener in this loop"
    return found


async def all_checked(url: str, waiting: int) -> SharedListener:
    """Wait until ``waiting`` waiters are registered and the first lookup statement has answered them."""

    async def ready() -> SharedListener | None:
        found = shared_listener(url)
        return found if found is not None and found.waiters == waiting and found.statements >= 1 else None

    result: SharedListener = await wait_for(ready, f"{waiting} triggers registered and checked")
    # The lookups of the first turn of the loop may still be in flight: measure once all have answered.
    await wait_for(lambda: asyncio.sleep(0, result.idle), "the first lookups to answer")
    return result


def land_completions(lander: Lander, job: str, runs: list[str]) -> None:
    """Complete many runs in one transaction, as a busy receiver batch does."""
    lander.land(
        [
            lander.event(
                "sync.events.allConsumed",
                job,
                run,
                {"processed": "1", "emitted": "1", "consumed": "1", "complete": True},
            )
            for run in runs
        ]
    )


def test_two_hundred_triggers_share_one_connection_and_one_query(lander: Lander, landing_conn: str) -> None:
    async def scenario() -> tuple[list[int], int, int, dict[str, dict[str, Any]]]:
        waiting = Waiting("many", 200)
        shared = await all_checked(landing_conn, 200)
        held = await asyncio.to_thread(backends, landing_conn)
        # 200 checks at start, yet only a handful of statements: lookups of one turn of the loop go out together.
        first_statements = shared.statements
        land_completions(lander, waiting.job, waiting.runs)
        return held, first_statements, shared.connects, await waiting.results()

    held, first_statements, connects, results = asyncio.run(scenario())
    assert len(held) == 1, f"200 waiting triggers hold {len(held)} connections"
    assert connects == 1
    assert first_statements <= 3, f"200 first checks took {first_statements} statements"
    assert {event["status"] for event in results.values()} == {"success"}
    assert {run: event["sync_run_id"] for run, event in results.items()} == {run: run for run in results}


def test_a_notification_wakes_only_the_trigger_it_concerns(lander: Lander, landing_conn: str) -> None:
    async def scenario() -> tuple[str, list[str], int, dict[str | None, int], int]:
        waiting = Waiting("only", 50)
        shared = await all_checked(landing_conn, 50)
        chosen = waiting.runs[17]
        before = {waiter.sync_run_id: waiter.wakeups for waiter in shared.registered()}
        # Two notifications (processed, then allConsumed), both about the chosen run only.
        lander.processed(waiting.job, chosen, processed=1, emitted=1)
        await wait_for(
            lambda: asyncio.sleep(
                0, [w.wakeups for w in shared.registered() if w.sync_run_id == chosen] != [before[chosen]]
            ),
            "the chosen trigger to be woken",
        )
        chosen_wakeups = next(w.wakeups for w in shared.registered() if w.sync_run_id == chosen)
        land_completions(lander, waiting.job, [chosen])
        await asyncio.wait_for(waiting.tasks[chosen], 15)
        # A wrongly woken trigger would have been woken by the same notification, before the chosen one
        # finished; once every lookup has answered, none can still be on its way.
        await wait_for(lambda: asyncio.sleep(0, shared.idle), "every lookup to answer")
        done = waiting.done()
        others = {waiter.sync_run_id: waiter.wakeups - before[waiter.sync_run_id] for waiter in shared.registered()}
        for task in waiting.tasks.values():
            task.cancel()
        await asyncio.gather(*waiting.tasks.values(), return_exceptions=True)
        return chosen, done, chosen_wakeups - before[chosen], others, shared.waiters

    chosen, done, chosen_woken, others, left = asyncio.run(scenario())
    assert done == [chosen]
    assert chosen_woken == 1
    assert len(others) == 49
    assert {run: count for run, count in others.items() if count} == {}
    assert left == 0


def test_the_shared_connection_killed_and_restored_while_100_wait(lander: Lander, landing_conn: str) -> None:
    async def scenario() -> tuple[int, int, int, dict[str, dict[str, Any]]]:
        waiting = Waiting("restore", 100)
        shared = await all_checked(landing_conn, 100)
        [killed] = await asyncio.to_thread(backends, landing_conn)
        # Completed while the listener is reconnecting (its first attempt waits ~0.5 s): notifications
        # sent before it LISTENs again are lost, and only the re-check after the reconnect finds those runs.
        lander.execute("SELECT pg_terminate_backend(%s)", (killed,))
        land_completions(lander, waiting.job, waiting.runs)
        results = await waiting.results()
        return killed, shared.connects, len(await asyncio.to_thread(backends, landing_conn)), results

    _killed, connects, held_after, results = asyncio.run(scenario())
    assert connects == 2, "expected one reconnect of the one shared connection"
    assert held_after <= 1
    assert {event["status"] for event in results.values()} == {"success"}
    assert len(results) == 100


def test_cancelled_triggers_leave_and_the_others_keep_waiting(
    lander: Lander, landing_conn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[list[str], dict[str, dict[str, Any]], list[int]]:
        waiting = Waiting("cancel", 30)
        cancelled = waiting.runs[::3]

        # What the triggerer does when a task is cleared or its DAG run deleted: some while their
        # first lookup is still in flight, the others once they are waiting.
        def registered(count: int) -> bool:
            found = shared_listener(landing_conn)
            return found is not None and found.waiters == count

        await wait_for(lambda: asyncio.sleep(0, registered(30)), "30 triggers registered")
        for run in cancelled[:5]:
            waiting.tasks.pop(run).cancel()
        shared = await all_checked(landing_conn, 25)
        for run in cancelled[5:]:
            waiting.tasks.pop(run).cancel()
        await wait_for(lambda: asyncio.sleep(0, shared.waiters == 20), "the cancelled triggers to unregister")
        land_completions(lander, waiting.job, waiting.runs)
        results = await waiting.results()
        await wait_for(lambda: asyncio.sleep(0, shared_listener(landing_conn) is None), "the last one out to close")
        left = await wait_for(
            lambda: asyncio.to_thread(lambda: backends(landing_conn) or [-1]), "the connection to close"
        )
        return cancelled, results, left

    with caplog.at_level(logging.WARNING):
        cancelled, results, left = asyncio.run(scenario())
        gc.collect()  # an unretrieved task or future exception is reported when it is collected
    assert set(results).isdisjoint(cancelled)
    assert len(results) == 20
    assert {event["status"] for event in results.values()} == {"success"}
    assert left == [-1], f"connections left open after the last trigger left: {left}"
    noise = [r.getMessage() for r in caplog.records if r.name == "asyncio" or "generator" in r.getMessage()]
    assert noise == []


def test_the_backup_poll_checks_every_waiting_run_in_one_statement(lander: Lander, landing_conn: str) -> None:
    async def scenario() -> tuple[int, dict[str, dict[str, Any]]]:
        waiting = Waiting("poll", 60, poll_interval=0.5)
        shared = await all_checked(landing_conn, 60)
        before = shared.statements
        # Not a wait for a condition: the poll runs on a clock, so its statements are counted over a fixed
        # window of four intervals (60 lookups each if they were not batched).
        await asyncio.sleep(2.0)
        polls = shared.statements - before
        for run in waiting.runs:  # record events send no notification
            lander.records(waiting.job, run, 1)
        # Completed without a notification (as if lost): only the backup poll can find these.
        lander.execute("UPDATE knit_landing.sync_runs SET complete_at = now() WHERE sync_job_id = %s", (waiting.job,))
        return polls, await waiting.results()

    polls, results = asyncio.run(scenario())
    # One statement per interval for all 60 (the record events' own wake-ups aside), not 60 per interval.
    assert 2 <= polls <= 6, f"{polls} statements in four poll intervals of 60 waiting triggers"
    assert {event["status"] for event in results.values()} == {"success"}


def test_both_kinds_of_trigger_share_the_connection(lander: Lander, landing_conn: str) -> None:
    data_type = f"type_{ids('x')[1][-8:]}"
    typed = Lander(landing_conn, data_type=data_type)

    async def scenario() -> tuple[list[int], dict[str, dict[str, Any]], list[dict[str, Any]]]:
        announced: list[dict[str, Any]] = []

        async def watch() -> None:
            async for event in CompletedRunsTrigger(data_type=data_type, poll_interval=SLOW_POLL).run():
                announced.append(event.payload)

        watcher = asyncio.create_task(watch())
        waiting = Waiting("kinds", 5)
        await all_checked(landing_conn, 6)
        held = await asyncio.to_thread(backends, landing_conn)
        land_completions(typed, waiting.job, waiting.runs)
        results = await waiting.results()
        await wait_for(lambda: asyncio.sleep(0, len(announced) >= 5), "five announcements")
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        return held, results, announced

    try:
        held, results, announced = asyncio.run(scenario())
    finally:
        typed.close()
    assert len(held) == 1
    assert {event["status"] for event in results.values()} == {"success"}
    assert sorted(event["sync_run_id"] for event in announced) == sorted(results)
