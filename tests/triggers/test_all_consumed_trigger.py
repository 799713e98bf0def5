"""AllConsumedTrigger against a real Postgres: the right run, woken by NOTIFY, robust to a lost connection."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from knit_landing_helpers import Lander, checked, ids

from knit_devtools.embedded_postgres import free_port
from knit_provider.triggers.all_consumed import APPLICATION_NAME, AllConsumedTrigger

# Long enough that only NOTIFY (or a reconnect's re-check) can wake the trigger within a test's deadline.
SLOW_POLL = 60.0
DEADLINE = 15.0


async def only_event(trigger: AllConsumedTrigger) -> dict[str, Any]:
    """Run the trigger to its event and check that it yields exactly one."""
    events = trigger.run()
    first = await anext(events)
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    return dict(first.payload)


def start(trigger: AllConsumedTrigger) -> asyncio.Task[dict[str, Any]]:
    return asyncio.create_task(only_event(trigger))


async def outcome(task: asyncio.Task[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(task, DEADLINE)


def test_picks_the_first_run_of_the_job_since_the_start(lander: Lander, landing_conn: str) -> None:
    job, run = ids("pick")
    other_job, _ = ids("other")

    async def scenario() -> dict[str, Any]:
        lander.records(job, f"{run}-old", 2)  # before the operator's start time: never the one
        started = lander.now()
        lander.records(job, f"{run}-1", 3)
        lander.records(job, f"{run}-2", 4)
        lander.all_consumed(job, f"{run}-2", 4)  # a later run of the same job finishing first
        lander.records(other_job, f"{run}-x", 1)
        lander.all_consumed(other_job, f"{run}-x", 1)
        task = start(
            AllConsumedTrigger(sync_job_id=job, started_after=started.isoformat(), poll_interval=SLOW_POLL, timeout=60)
        )
        await checked(landing_conn, APPLICATION_NAME)
        assert not task.done(), "fired although the first run since the start has not completed"
        lander.all_consumed(job, f"{run}-1", 3)
        return await outcome(task)

    event = asyncio.run(scenario())
    assert event == {
        "status": "success",
        "message": event["message"],
        "sync_job_id": job,
        "sync_run_id": f"{run}-1",
        "record_events": 3,
        "processed": 3,
        "emitted": 3,
        "consumed": 3,
    }
    assert f"{run}-1" in event["message"]


def test_a_run_knit_began_before_the_start_is_passed_over(lander: Lander, landing_conn: str) -> None:
    """Knit's own scheduled delta of the job, begun before our sync.start, lands its events after the start
    time was read: its startedAt says it is not ours, so the wait goes on to the next run of the job."""
    job, run = ids("sched")

    async def scenario() -> dict[str, Any]:
        started = lander.now()
        begun_before = int((started - timedelta(seconds=30)).timestamp() * 1000)
        lander.records(job, f"{run}-scheduled", 2)
        lander.records(job, f"{run}-ours", 3)
        lander.all_consumed(job, f"{run}-scheduled", 2, started_at_ms=begun_before)
        task = start(
            AllConsumedTrigger(sync_job_id=job, started_after=started.isoformat(), poll_interval=SLOW_POLL, timeout=60)
        )
        await checked(landing_conn, APPLICATION_NAME)
        assert not task.done(), "ended on the run Knit began before the start"
        lander.all_consumed(job, f"{run}-ours", 3)
        return await outcome(task)

    event = asyncio.run(scenario())
    assert (event["status"], event["sync_run_id"], event["record_events"]) == ("success", f"{run}-ours", 3)


def test_run_id_given_wins_over_the_time_window(lander: Lander, landing_conn: str) -> None:
    job, run = ids("byid")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        lander.records(job, f"{run}-a", 1)
        started = lander.now()
        lander.records(job, f"{run}-b", 2)
        by_id = start(AllConsumedTrigger(sync_job_id=job, sync_run_id=f"{run}-a", poll_interval=SLOW_POLL, timeout=60))
        by_window = start(
            AllConsumedTrigger(sync_job_id=job, started_after=started, poll_interval=SLOW_POLL, timeout=60)
        )
        lander.all_consumed(job, f"{run}-a", 1)
        first = await outcome(by_id)
        assert not by_window.done()
        lander.all_consumed(job, f"{run}-b", 2)
        return first, await outcome(by_window)

    by_id, by_window = asyncio.run(scenario())
    assert (by_id["status"], by_id["sync_run_id"], by_id["record_events"]) == ("success", f"{run}-a", 1)
    assert (by_window["status"], by_window["sync_run_id"], by_window["record_events"]) == ("success", f"{run}-b", 2)


def test_late_all_consumed_of_an_older_run_is_ignored(lander: Lander, landing_conn: str) -> None:
    job, run = ids("late")

    async def scenario() -> dict[str, Any]:
        lander.records(job, f"{run}-old", 5)
        started = lander.now()
        task = start(
            AllConsumedTrigger(sync_job_id=job, started_after=started.isoformat(), poll_interval=SLOW_POLL, timeout=60)
        )
        _, first_check = await checked(landing_conn, APPLICATION_NAME)
        lander.records(job, f"{run}-new", 2)
        lander.all_consumed(job, f"{run}-old", 5)  # the older run's signal arrives late, after ours started
        await checked(landing_conn, APPLICATION_NAME, after=first_check)  # woken by it, and looked
        assert not task.done(), "an older run's allConsumed satisfied the trigger"
        lander.all_consumed(job, f"{run}-new", 2)
        return await outcome(task)

    event = asyncio.run(scenario())
    assert (event["status"], event["sync_run_id"], event["record_events"]) == ("success", f"{run}-new", 2)


def test_notify_wakes_the_trigger_long_before_the_backup_poll(lander: Lander, landing_conn: str) -> None:
    job, run = ids("notify")

    async def scenario() -> dict[str, Any]:
        task = start(AllConsumedTrigger(sync_job_id=job, sync_run_id=run, poll_interval=SLOW_POLL, timeout=120))
        await checked(landing_conn, APPLICATION_NAME)
        lander.records(job, run, 3)
        lander.all_consumed(job, run, 3)
        return await outcome(task)  # DEADLINE is a quarter of the poll interval: only NOTIFY gets here

    event = asyncio.run(scenario())
    assert (event["status"], event["sync_run_id"], event["consumed"]) == ("success", run, 3)


def test_backup_poll_finds_a_completion_whose_notify_was_lost(lander: Lander, landing_conn: str) -> None:
    job, run = ids("lost")

    async def scenario() -> dict[str, Any]:
        lander.records(job, run, 2)
        task = start(AllConsumedTrigger(sync_job_id=job, sync_run_id=run, poll_interval=1.0, timeout=60))
        await checked(landing_conn, APPLICATION_NAME)
        # Completed without a NOTIFY (as if it was lost): only the backup poll can see this.
        lander.execute(
            "UPDATE knit_landing.sync_runs SET all_consumed_at = now(), complete_at = now(), "
            "consumed_count = 2 WHERE sync_run_id = %s",
            (run,),
        )
        return await outcome(task)

    event = asyncio.run(scenario())
    assert (event["status"], event["sync_run_id"], event["consumed"]) == ("success", run, 2)


class Proxy:
    """A TCP proxy to Postgres the test can close: lets a completion land while the trigger cannot reconnect."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def refuse(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def test_reconnects_and_rechecks_after_its_backend_is_killed(
    lander: Lander, landing_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, run = ids("kill")
    parts = urlsplit(landing_url)
    proxy = Proxy(parts.port or 5432)
    proxied = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{proxy.port}")))
    monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", proxied)

    async def scenario() -> tuple[dict[str, Any], int, int]:
        await proxy.open()
        lander.records(job, run, 4)
        task = start(AllConsumedTrigger(sync_job_id=job, sync_run_id=run, poll_interval=SLOW_POLL, timeout=120))
        killed, _ = await checked(landing_url, APPLICATION_NAME)
        proxy.refuse()
        lander.execute("SELECT pg_terminate_backend(%s)", (killed,))
        lander.all_consumed(job, run, 4)  # its NOTIFY reaches nobody: the trigger is disconnected
        assert not task.done()
        await proxy.open()
        event = await outcome(task)
        return event, killed, proxy.port

    event, _killed, _ = asyncio.run(scenario())
    assert (event["status"], event["sync_run_id"], event["record_events"]) == ("success", run, 4)


def test_serialize_round_trip_mid_wait_rebuilds_the_same_wait(lander: Lander, landing_conn: str) -> None:
    job, run = ids("serde")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], tuple[str, dict[str, Any]]]:
        started = lander.now()
        original = AllConsumedTrigger(
            sync_job_id=job, started_after=started.isoformat(), poll_interval=SLOW_POLL, timeout=300
        )
        first = start(original)
        await checked(landing_conn, APPLICATION_NAME)
        classpath, kwargs = original.serialize()
        assert classpath == "knit_provider.triggers.all_consumed.AllConsumedTrigger"
        module, _, name = classpath.rpartition(".")
        rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
        assert rebuilt.serialize() == (classpath, kwargs)
        second = start(rebuilt)
        lander.records(job, run, 2)
        lander.all_consumed(job, run, 2)
        return await outcome(first), await outcome(second), (classpath, kwargs)

    first, second, (_, kwargs) = asyncio.run(scenario())
    assert first == second
    assert first["sync_run_id"] == run
    # The deadline travels with the trigger, so a triggerer restart does not restart the timeout.
    assert kwargs["deadline"] is not None
    assert kwargs["timeout"] == 300


def test_timeout_reports_what_landed_and_what_knit_said(lander: Lander, landing_conn: str) -> None:
    job, run = ids("timeout")
    lander.records(job, run, 3)
    lander.processed(job, run, processed=7, emitted=5)

    event = asyncio.run(
        only_event(AllConsumedTrigger(sync_job_id=job, sync_run_id=run, poll_interval=0.2, timeout=0.5))
    )
    assert event["status"] == "timeout"
    assert (event["sync_run_id"], event["record_events"], event["processed"], event["emitted"]) == (run, 3, 7, 5)
    assert event["consumed"] is None
    assert "3 record events" in event["message"]
    assert "processed=7, emitted=5 (not final)" in event["message"]


def test_timeout_when_no_event_of_the_job_landed(lander: Lander, landing_conn: str) -> None:
    job, _ = ids("nothing")
    event = asyncio.run(
        only_event(AllConsumedTrigger(sync_job_id=job, started_after=lander.now(), poll_interval=0.2, timeout=0.3))
    )
    assert event["status"] == "timeout"
    assert event["sync_run_id"] is None
    assert event["record_events"] is None
    assert f"job {job}" in event["message"]
    assert "no event of it had landed" in event["message"]


def test_deadline_in_the_past_times_out_after_one_check(lander: Lander, landing_conn: str) -> None:
    job, run = ids("past")
    lander.records(job, run, 1)
    lander.all_consumed(job, run, 1)
    past = (lander.now() - timedelta(minutes=5)).isoformat()
    # Already complete: the check comes before the deadline test, so success wins.
    event = asyncio.run(only_event(AllConsumedTrigger(sync_job_id=job, sync_run_id=run, deadline=past)))
    assert event["status"] == "success"


def test_error_when_the_run_belongs_to_another_job(lander: Lander, landing_conn: str) -> None:
    job, run = ids("mismatch")
    lander.records(job, run, 1)
    event = asyncio.run(only_event(AllConsumedTrigger(sync_job_id="someone-else", sync_run_id=run, timeout=30)))
    assert event["status"] == "error"
    assert f"belongs to sync job {job}" in event["message"]


def test_error_when_the_connection_does_not_exist(landing_conn: str) -> None:
    event = asyncio.run(
        only_event(
            AllConsumedTrigger(sync_job_id="j", sync_run_id="r", landing_conn_id="no_such_connection", timeout=30)
        )
    )
    assert event["status"] == "error"
    assert "no_such_connection" in event["message"]


def test_error_when_the_landing_schema_is_missing(landing_conn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNIT_LANDING_SCHEMA", "not_migrated")
    event = asyncio.run(only_event(AllConsumedTrigger(sync_job_id="j", sync_run_id="r", timeout=30)))
    assert event["status"] == "error"
    assert "UndefinedTableError" in event["message"]


def test_error_message_never_contains_the_password(landing_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = urlsplit(landing_url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KNIT_LANDING_DEFAULT",
        urlunsplit(
            parts._replace(netloc=f"postgres:s3cret-pw@{parts.hostname}:{parts.port}", path="/no_such_database")
        ),
    )
    event = asyncio.run(only_event(AllConsumedTrigger(sync_job_id="j", sync_run_id="r", timeout=30)))
    assert event["status"] == "error"
    assert "s3cret-pw" not in event["message"]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"sync_job_id": "j"}, "Cannot tell which sync run"),
        ({"sync_job_id": "j", "started_after": "None"}, "Cannot tell which sync run"),
        ({"sync_job_id": "j", "started_after": "yesterday"}, "not an ISO-8601 time"),
        ({"sync_run_id": "r", "poll_interval": 0}, "poll_interval"),
    ],
)
def test_refuses_arguments_that_could_wait_for_the_wrong_run(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        AllConsumedTrigger(**kwargs)
