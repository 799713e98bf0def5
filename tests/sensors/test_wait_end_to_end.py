"""The waits end to end: events go through the real receiver process (signed HTTP, group commit, NOTIFY).

1. ``AllConsumedTrigger`` woken by an allConsumed that the receiver landed.
2. ``StartSyncOperator(wait_for_completion=True)`` in a ``dag.test()`` run: it calls a local fake Knit,
   which delivers the run's events to the receiver; the operator defers to the trigger and returns the
   start ids plus the completion counts.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk import DAG, task
from airflow.utils.state import TaskInstanceState
from dag_helpers import WAIT, run_dag, states
from knit_landing_helpers import Lander, backend_check, checked, ids, receiver_process

from knit_devtools.services import wait_until
from knit_provider.operators.start_sync import StartSyncOperator
from knit_provider.triggers.all_consumed import APPLICATION_NAME, AllConsumedTrigger
from knit_provider.webhook.signature import sign

API_KEY = "test-api-key-0123456789"
INTEGRATION = "int-e2e"


@pytest.fixture(scope="module")
def receiver(landing_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real receiver process, landing in this module's database."""
    with receiver_process(landing_url, API_KEY, tmp_path_factory.mktemp("receiver")) as url:
        yield url


def envelope(event_type: str, job: str, run: str, data: dict[str, Any], record_id: str | None = None) -> bytes:
    event: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "eventType": event_type,
        "eventData": data,
        "syncType": "initial_sync",
        "syncDataType": "ats_applications",
        "syncJobId": job,
        "syncRunId": run,
    }
    if record_id:
        event["recordId"] = record_id
    return json.dumps(event).encode()


def run_events(job: str, run: str, records: int) -> tuple[list[bytes], list[bytes]]:
    """The bodies Knit sends for one run: its record events, then processed and allConsumed."""
    bodies = [envelope("record.new", job, run, {"info": {"id": f"app-{i}"}}, f"app-{i}") for i in range(records)]
    counts = {
        "status": "SUCCESS",
        "processed": str(records),
        "emitted": str(records),
        "complete": True,
        # Now: a wait by job and start time passes over a run Knit reports as begun before that time.
        "startedAt": str(int(time.time() * 1000)),
        "processedAt": "1714557660000",
    }
    final = [
        envelope("sync.events.processed", job, run, counts),
        envelope(
            "sync.events.allConsumed", job, run, {**counts, "consumed": str(records), "completedAt": "1714557720000"}
        ),
    ]
    return bodies, final


def deliver(url: str, bodies: list[bytes]) -> None:
    """POST each body as Knit does (signed with the API key); Knit retries until 200, a test just asserts it."""
    with httpx.Client(timeout=10) as client:
        for body in bodies:
            response = client.post(
                url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Knit-Signature": sign(body, API_KEY.encode()),
                    "X-Knit-Integration-Id": INTEGRATION,
                },
            )
            assert response.status_code == 200, response.text


def test_trigger_wakes_on_an_all_consumed_landed_by_the_receiver(
    receiver: str, lander: Lander, landing_conn: str
) -> None:
    job, run = ids("receiver")
    records, final = run_events(job, run, 3)

    async def scenario() -> dict[str, Any]:
        started = lander.now()
        events = AllConsumedTrigger(
            sync_job_id=job, started_after=started.isoformat(), poll_interval=60, timeout=120
        ).run()
        first = asyncio.ensure_future(anext(events))
        await checked(landing_conn, APPLICATION_NAME)
        await asyncio.to_thread(deliver, receiver, records + final)
        event = await asyncio.wait_for(first, 15)  # a quarter of the backup poll: NOTIFY did it
        await events.aclose()
        return dict(event.payload)

    event = asyncio.run(scenario())
    assert event == {
        "status": "success",
        "message": event["message"],
        "sync_job_id": job,
        "sync_run_id": run,
        "record_events": 3,
        "processed": 3,
        "emitted": 3,
        "consumed": 3,
    }


class FakeKnit:
    """Knit's ``sync.start`` on a local port; each start delivers one run to the destination it was given."""

    def __init__(self, landing_url: str, records: int) -> None:
        self.landing_url = landing_url
        self.records = records
        self.started: list[dict[str, Any]] = []
        self.deliveries: list[threading.Thread] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1.0/sync.start" or self.headers["Authorization"] != f"Bearer {API_KEY}":
                    self._answer(401, {"success": False, "error": {"msg": "unauthorized"}})
                    return
                job, run = ids("knit")
                fake.started.append({**body, "integration": self.headers["X-Knit-Integration-Id"]})
                self._answer(200, {"success": True, "data": {"syncJobId": job}})
                delivery = threading.Thread(target=fake.deliver_run, args=(body["destination"], job, run), daemon=True)
                fake.deliveries.append(delivery)
                delivery.start()

            def _answer(self, status: int, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def deliver_run(self, destination: str, job: str, run: str) -> None:
        records, final = run_events(job, run, self.records)
        deliver(destination, records)
        # The run ends once the operator is waiting in its trigger, so the wait itself is exercised.
        wait_until(lambda: backend_check(self.landing_url, APPLICATION_NAME, None), WAIT, "the operator's trigger")
        deliver(destination, final)

    def close(self) -> None:
        self.server.shutdown()
        for delivery in self.deliveries:
            delivery.join(30)


@pytest.fixture
def knit(landing_conn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKnit]:
    fake = FakeKnit(landing_conn, records=4)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KNIT_DEFAULT",
        json.dumps(
            {"conn_type": "knit", "host": fake.url, "password": API_KEY, "extra": {"integration_id": INTEGRATION}}
        ),
    )
    try:
        yield fake
    finally:
        fake.close()


def check_result(knit: FakeKnit, receiver: str, xcom: dict[str, Any]) -> None:
    (call,) = knit.started
    assert (call["destination"], call["integration"]) == (receiver, INTEGRATION)
    assert xcom["sync_job_id"].startswith("knit-job-")
    assert xcom["sync_run_id"] == xcom["sync_job_id"].replace("-job-", "-run-")  # learnt from the landed events
    assert (xcom["integration_id"], xcom["record_events"], xcom["consumed"]) == (INTEGRATION, 4, 4)
    assert datetime.fromisoformat(xcom["started_at"]).tzinfo is not None


def test_start_sync_waits_for_completion_in_a_dag_run(receiver: str, knit: FakeKnit, tmp_path: Path) -> None:
    # deferrable=False: the operator runs the same trigger in the worker. dag.test() resumes a deferred
    # task with only the event, dropping the operator's defer kwargs (real triggerers merge them), so the
    # deferred path is exercised the way the triggerer runs it in the next test.
    out = tmp_path / "xcom.json"
    with DAG(f"start_sync_wait_{uuid.uuid4().hex[:6]}", schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        started = StartSyncOperator(
            task_id="start_sync",
            destination=receiver,
            wait_for_completion=True,
            deferrable=False,
            poll_interval=60,
            timeout=120,
        )

        @task
        def record(result: dict[str, Any]) -> None:
            out.write_text(json.dumps(result))

        record(started.output)

    result = run_dag(dag)
    assert states(result) == {"start_sync": TaskInstanceState.SUCCESS, "record": TaskInstanceState.SUCCESS}
    check_result(knit, receiver, json.loads(out.read_text()))


class PushedXCom:
    """The one thing StartSyncOperator asks of its task instance before deferring: push the start dict."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_start_sync_deferred_resumes_with_the_trigger_event(receiver: str, knit: FakeKnit) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    operator = StartSyncOperator(
        task_id="start_sync",
        destination=receiver,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=60,
        timeout=120,
    )
    ti = PushedXCom()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": ti})  # type: ignore[arg-type]
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "knit_provider.triggers.all_consumed.AllConsumedTrigger"
    # What the triggerer does: rebuild the trigger from its serialized form, run it, then resume the task
    # with its defer kwargs plus the event.
    trigger = AllConsumedTrigger(**kwargs)

    async def first_event() -> dict[str, Any]:
        events = trigger.run()
        event = await asyncio.wait_for(anext(events), 30)
        await events.aclose()
        return dict(event.payload)

    event = asyncio.run(first_event())
    xcom = getattr(operator, deferred.value.method_name)({"ti": ti}, event=event, **(deferred.value.kwargs or {}))
    check_result(knit, receiver, xcom)
    assert ti.pushed["knit_sync"]["sync_job_id"] == xcom["sync_job_id"]
