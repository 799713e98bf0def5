"""StartSyncOperator against a local HTTP server answering like Knit and a real landing Postgres.

Knit is a small ``http.server`` on 127.0.0.1 (no transport mocks outside the hook's unit tests);
the landing database is this module's real Postgres. The DAG tests run a real ``dag.test()``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
from knit_landing_helpers import ATS_APPLICATION_MODELS

from knit_provider import data_types
from knit_provider.data_types import Model
from knit_provider.data_types.registry import unregister
from knit_provider.exceptions import KnitConfigurationError, KnitInputError, KnitLandingClockError
from knit_provider.operators.links import DEFAULT_DASHBOARD_URL, KnitDashboardLink
from knit_provider.operators.start_sync import START_XCOM_KEY, StartSyncOperator

API_KEY = "knit-operator-test-key-81f2c4"
DESTINATION = "https://hooks.example/knit"


class _KnitHandler(BaseHTTPRequestHandler):
    """``sync.start`` answers a job id derived from the integration, like a per-integration job."""

    server: FakeKnit

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        integration = self.headers.get("X-Knit-Integration-Id")
        self.server.received.append(
            {"path": self.path, "integration": integration, "auth": self.headers.get("Authorization"), "body": body}
        )
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            status, answer = 401, {"success": False, "error": {"msg": "Invalid API key"}}
        elif self.path == "/v1.0/sync.start":
            data = {"syncJobId": f"sj_{integration}"}
            if self.server.with_run_id:
                data["syncRunId"] = f"sr_{integration}"
            status, answer = 200, {"success": True, "data": data}
        else:
            status, answer = 404, {"success": False, "error": {"msg": f"no route {self.path}"}}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Knit-Execution-Id", f"ex_{len(self.server.received)}")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if status == 200 and self.server.deliver is not None:
            # Knit delivers a run's events after it has answered sync.start.
            threading.Thread(target=self.server.deliver, args=(answer["data"],), daemon=True).start()

    def log_message(self, format: str, *args: Any) -> None:
        return


class FakeKnit(ThreadingHTTPServer):
    daemon_threads = True
    received: list[dict[str, Any]]
    with_run_id: bool
    deliver: Callable[[dict[str, Any]], None] | None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def knit() -> Iterator[FakeKnit]:
    server = FakeKnit(("127.0.0.1", 0), _KnitHandler)
    server.received, server.with_run_id, server.deliver = [], True, None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def landing_db(landing_url: str) -> str:
    """The landing database, in a time zone unlike the worker's, so its clock's readings are recognisable."""
    conn = psycopg2.connect(landing_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        (name,) = cur.fetchone()
        cur.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Kolkata'")
    conn.close()
    return landing_url


def db_now(url: str) -> datetime:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT now()")
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch, knit: FakeKnit, landing_db: str) -> Callable[..., None]:
    """Point knit_default at the local server and knit_landing_default at the landing database."""

    def define(landing: str | None = landing_db, **extra: Any) -> None:
        knit_conn = {
            "conn_type": "knit",
            "host": knit.url,
            "password": API_KEY,
            "extra": {"integration_id": "int_default", **extra},
        }
        monkeypatch.setenv("AIRFLOW_CONN_KNIT_DEFAULT", json.dumps(knit_conn))
        if landing is None:
            monkeypatch.delenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", raising=False)
        else:
            monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", landing)

    define()
    return define


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- execute, called directly --------------------------------------------------------------------


def test_execute_starts_the_sync_and_returns_the_xcom_dict(connections, knit, landing_db):
    before = db_now(landing_db)
    op = StartSyncOperator(
        task_id="start",
        destination=DESTINATION,
        integration_id="int_a",
        models=["application_info", "application_offers"],
        frequency="high",
        sync_type="initial_sync",
    )
    result = op.execute({})
    after = db_now(landing_db)

    assert set(result) == {"sync_job_id", "sync_run_id", "integration_id", "started_at", "started_by", "waited_seconds"}
    assert (result["started_by"], result["waited_seconds"]) == ("airflow", 0.0)
    assert (result["sync_job_id"], result["sync_run_id"], result["integration_id"]) == ("sj_int_a", "sr_int_a", "int_a")
    started_at = datetime.fromisoformat(result["started_at"])
    assert started_at.utcoffset() == timedelta(hours=5, minutes=30), "must be the database's now()"
    assert before <= started_at <= after
    (request,) = knit.received
    assert request["integration"] == "int_a"
    assert request["body"] == {
        "dataType": "ats_applications",
        "models": ["application_info", "application_offers"],
        "destination": DESTINATION,
        "frequency": "high",
        "syncType": "initial_sync",
    }


def test_defaults_send_knits_documented_body_for_every_application_model(connections, knit):
    StartSyncOperator(task_id="start").execute({})
    (request,) = knit.received
    assert request["integration"] == "int_default"
    # No destination and no frequency: Knit's reference has neither; Knit pushes to the category's webhook.
    assert request["body"] == {"dataType": "ats_applications", "models": list(ATS_APPLICATION_MODELS)}


def test_a_rendered_none_integration_and_sync_type_mean_not_set(connections, knit):
    StartSyncOperator(task_id="start", destination=DESTINATION, integration_id="None", sync_type="").execute({})
    (request,) = knit.received
    assert request["integration"] == "int_default"
    assert "syncType" not in request["body"]


def test_without_run_id_from_knit_the_xcom_says_none(connections, knit):
    knit.with_run_id = False
    result = StartSyncOperator(task_id="start", destination=DESTINATION).execute({})
    assert result["sync_run_id"] is None
    assert result["sync_job_id"] == "sj_int_default"


def test_unknown_models_fail_before_any_call_naming_the_valid_ones(connections, knit):
    # The landing database is unreachable: reaching it first would raise KnitLandingClockError instead.
    connections(landing=f"postgresql://u:p@127.0.0.1:{closed_port()}/x")
    op = StartSyncOperator(
        task_id="start", destination=DESTINATION, models=["application_info", "application_salary", "offers"]
    )
    with pytest.raises(KnitInputError) as info:
        op.execute({})
    assert str(info.value) == (
        "models has unknown model id(s) for ats_applications: 'application_salary', 'offers'. Valid model ids: "
        "application_info, application_stage, application_interviews, application_rejection, "
        "application_offers, application_attachments."
    )
    assert knit.received == []


def test_a_known_data_types_models_are_checked_against_its_spec(connections, knit):
    connections(landing=f"postgresql://u:p@127.0.0.1:{closed_port()}/x")
    op = StartSyncOperator(
        task_id="start", destination=DESTINATION, data_type="ats_jobs", models=["job_info", "application_info"]
    )
    with pytest.raises(KnitInputError) as info:
        op.execute({})
    assert str(info.value) == (
        "models has unknown model id(s) for ats_jobs: 'application_info'. Valid model ids: job_info, "
        "job_departments, job_offices, job_hiringManagers, job_recruiters, job_stages, job_rawValues, job_posts, "
        "job_compensation, job_questions, job_requirements, job_info_enhanced."
    )
    assert knit.received == []


def test_a_known_data_type_without_models_asks_for_its_default_models(connections, knit):
    StartSyncOperator(task_id="start", destination=DESTINATION, data_type="ats_jobs").execute({})
    assert knit.received[0]["body"]["models"] == [
        "job_info",
        "job_departments",
        "job_offices",
        "job_hiringManagers",
        "job_recruiters",
        "job_stages",
    ], "the typed models; the ones kept raw only when asked for"


def test_a_registered_data_types_models_are_checked_against_its_spec(connections, knit):
    """A type registered by a plugin is checked like a built-in one, through the same registry."""
    spec = replace(data_types.get("ats_jobs"), name="test_offices", models=(Model("office_info", "info", "Info"),))
    data_types.register(spec)
    try:
        with pytest.raises(KnitInputError, match=r"for test_offices: 'job_info'\. Valid model ids: office_info\.$"):
            StartSyncOperator(task_id="start", data_type="test_offices", models=["job_info"]).execute({})
        StartSyncOperator(task_id="start", destination=DESTINATION, data_type="test_offices").execute({})
    finally:
        unregister("test_offices")
    assert [r["body"] for r in knit.received] == [
        {"dataType": "test_offices", "models": ["office_info"], "destination": DESTINATION}
    ]


def test_a_data_type_the_provider_does_not_know_passes_its_models_through(connections, knit):
    StartSyncOperator(
        task_id="start", destination=DESTINATION, data_type="hris_employees", models=["employee_profile", "x"]
    ).execute({})
    assert knit.received[0]["body"]["models"] == ["employee_profile", "x"]
    assert knit.received[0]["body"]["dataType"] == "hris_employees"
    with pytest.raises(KnitInputError, match="knows no default models for 'hris_employees': name the model ids"):
        StartSyncOperator(task_id="start", data_type="hris_employees").execute({})


@pytest.mark.parametrize(
    "models",
    [
        "application_info, application_stage",
        "['application_info', 'application_stage']",
        '["application_info", "application_stage", "application_info"]',
    ],
)
def test_models_accept_what_templates_render(connections, knit, models):
    StartSyncOperator(task_id="start", destination=DESTINATION, models=models).execute({})
    assert knit.received[0]["body"]["models"] == ["application_info", "application_stage"]


def test_models_that_are_not_strings_fail_the_task_naming_the_param(connections, knit):
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises(AirflowFailException, match="models must be a list of strings"):
        StartSyncOperator(task_id="start", destination=DESTINATION, models=[1, 2]).execute({})  # type: ignore[list-item]
    assert knit.received == []


def test_unreachable_landing_database_fails_before_calling_knit(connections, knit):
    connections(landing=f"postgresql://u:p@127.0.0.1:{closed_port()}/x")
    with pytest.raises(KnitLandingClockError) as info:
        StartSyncOperator(task_id="start", destination=DESTINATION).execute({})
    assert "knit_landing_default" in str(info.value)
    assert "Nothing was sent to Knit" in str(info.value)
    assert ":p@" not in str(info.value)
    assert knit.received == []


def test_without_a_landing_connection_the_worker_clock_minus_a_margin_is_used(connections, knit):
    from structlog.testing import capture_logs

    connections(landing=None)
    op = StartSyncOperator(task_id="start", destination=DESTINATION, clock_margin=300)
    before = datetime.now(timezone.utc)
    with capture_logs() as logs:
        result = op.execute({})
    after = datetime.now(timezone.utc)

    started_at = datetime.fromisoformat(result["started_at"])
    assert before - timedelta(seconds=300) <= started_at <= after - timedelta(seconds=300)
    warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert any(
        "'knit_landing_default' (the landing database) is not defined" in w and "minus 300s" in w for w in warnings
    ), warnings
    assert len(knit.received) == 1


def test_a_bad_api_key_fails_the_task_with_knits_message(connections, monkeypatch, knit):
    monkeypatch.setenv(
        "AIRFLOW_CONN_KNIT_DEFAULT",
        json.dumps(
            {"conn_type": "knit", "host": knit.url, "password": "wrong-key-123456", "extra": {"integration_id": "i"}}
        ),
    )
    from knit_provider.exceptions import KnitAuthError

    with pytest.raises(KnitAuthError, match="Invalid API key"):
        StartSyncOperator(task_id="start", destination=DESTINATION).execute({})


def test_dashboard_link_uses_the_connections_url_else_knits(connections):
    link = KnitDashboardLink()
    op = StartSyncOperator(task_id="start", destination=DESTINATION)
    assert link.get_link(op, ti_key=None) == DEFAULT_DASHBOARD_URL  # type: ignore[arg-type]
    op.execute({})
    assert link.get_link(op, ti_key=None) == DEFAULT_DASHBOARD_URL  # type: ignore[arg-type]

    connections(dashboard_url="https://knit.internal.example/")
    op.execute({})
    assert link.get_link(op, ti_key=None) == "https://knit.internal.example/"  # type: ignore[arg-type]
    assert StartSyncOperator.operator_extra_links[0].name == "Knit dashboard"


def test_dashboard_link_opens_the_sync_job_when_the_connection_names_its_url(connections):
    link = KnitDashboardLink()
    connections(dashboard_url="https://knit.internal.example/jobs/{sync_job_id}?integration={integration_id}")
    op = StartSyncOperator(task_id="start", destination=DESTINATION, integration_id="int 1")
    op.execute({})
    assert link.get_link(op, ti_key=None) == (  # type: ignore[arg-type]
        "https://knit.internal.example/jobs/sj_int%201?integration=int%201"
    )


@pytest.mark.parametrize(
    ("template", "sync", "url"),
    [
        (None, {"sync_job_id": "sj"}, DEFAULT_DASHBOARD_URL),
        ("https://k.example/run/{sync_run_id}", {"sync_job_id": "sj", "sync_run_id": None}, "https://k.example/"),
        ("https://k.example/{unknown}", {"sync_job_id": "sj"}, "https://k.example/"),
        ("https://k.example/jobs/{sync_job_id}", None, "https://k.example/"),
    ],
)
def test_the_link_falls_back_to_the_site_when_an_id_is_missing(template, sync, url):
    from knit_provider.operators.links import knit_link_url

    assert knit_link_url(template, sync) == url


class _RecordingTI:
    """Stands in for context["ti"] where only the XCom push before deferring is observed."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_wait_for_completion_pushes_the_ids_then_defers_to_the_all_consumed_trigger(connections):
    from airflow.providers.common.compat.sdk import TaskDeferred

    from knit_provider.triggers.all_consumed import AllConsumedTrigger

    ti = _RecordingTI()
    op = StartSyncOperator(
        task_id="start",
        destination=DESTINATION,
        integration_id="int_w",
        wait_for_completion=True,
        poll_interval=15,
        timeout=600,
    )
    with pytest.raises(TaskDeferred) as info:
        op.execute({"ti": ti})  # type: ignore[arg-type]

    started = ti.pushed[START_XCOM_KEY]
    assert (started["sync_job_id"], started["sync_run_id"]) == ("sj_int_w", "sr_int_w")
    deferred = info.value
    assert deferred.method_name == "execute_complete"
    assert deferred.kwargs == {"started": started, "dashboard_url": DEFAULT_DASHBOARD_URL}
    assert deferred.timeout == timedelta(seconds=600) + timedelta(minutes=5)
    assert isinstance(deferred.trigger, AllConsumedTrigger)
    path, kwargs = deferred.trigger.serialize()
    assert path == "knit_provider.triggers.all_consumed.AllConsumedTrigger"
    assert kwargs["sync_job_id"] == "sj_int_w"
    assert kwargs["sync_run_id"] == "sr_int_w"
    assert datetime.fromisoformat(kwargs["started_after"]) == datetime.fromisoformat(started["started_at"])
    assert (kwargs["landing_conn_id"], kwargs["poll_interval"], kwargs["timeout"]) == (
        "knit_landing_default",
        15.0,
        600.0,
    )


def land_a_completed_run(url: str, data: dict[str, Any], records: int) -> None:
    """Land a run of the job Knit just started the way the receiver does: records, then allConsumed."""
    job = data["syncJobId"]
    run = data.get("syncRunId") or job.replace("sj_", "sr_")
    counts = {"status": "completed", "processed": records, "emitted": records, "consumed": records, "complete": True}
    events = [("record.new", {"info": {"id": f"app-{i}"}}, f"app-{i}") for i in range(records)]
    events.append(("sync.events.allConsumed", counts, None))
    columns: list[list[Any]] = [[] for _ in range(9)]
    for n, (event_type, event_data, record_id) in enumerate(events):
        envelope = {
            "eventId": f"{run}-{n}",
            "eventType": event_type,
            "eventData": event_data,
            "syncType": "initial_sync",
            "syncDataType": "ats_applications",
            "syncJobId": job,
            "syncRunId": run,
            "recordId": record_id,
        }
        for column, value in zip(
            columns,
            (
                envelope["eventId"],
                event_type,
                "initial_sync",
                "ats_applications",
                job,
                run,
                record_id,
                "int_w",
                json.dumps(envelope),
            ),
            strict=True,
        ):
            column.append(value)
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT knit_landing.land_events(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb[])", columns)
    finally:
        conn.close()


@pytest.mark.parametrize("knit_gives_run_id", [True, False])
def test_waiting_in_the_worker_returns_the_start_and_the_completion(connections, knit, landing_db, knit_gives_run_id):
    knit.with_run_id = knit_gives_run_id
    knit.deliver = lambda data: land_a_completed_run(landing_db, data, records=3)
    ti = _RecordingTI()
    op = StartSyncOperator(
        task_id="start",
        destination=DESTINATION,
        integration_id=f"int_w{knit_gives_run_id}",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.5,
        timeout=60,
    )

    result = op.execute({"ti": ti})  # type: ignore[arg-type]

    job = f"sj_int_w{knit_gives_run_id}"
    started = ti.pushed[START_XCOM_KEY]
    assert started["sync_run_id"] == (f"sr_int_w{knit_gives_run_id}" if knit_gives_run_id else None)
    # Without a run id from Knit, the run found in the landing store fills it in.
    assert result == {
        **started,
        "sync_job_id": job,
        "sync_run_id": f"sr_int_w{knit_gives_run_id}",
        "record_events": 3,
        "processed": 3,
        "emitted": 3,
        "consumed": 3,
    }


def test_waiting_in_the_worker_times_out_with_what_landed(connections, knit):
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    op = StartSyncOperator(
        task_id="start",
        destination=DESTINATION,
        integration_id="int_never",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.2,
        timeout=1,
    )
    ti = _RecordingTI()
    with pytest.raises(AirflowSensorTimeout):
        op.execute({"ti": ti})  # type: ignore[arg-type]
    assert ti.pushed[START_XCOM_KEY]["sync_job_id"] == "sj_int_never"


# -- real DAG runs -------------------------------------------------------------------------------


def _run(dag: Any) -> Any:
    from airflow.utils.state import DagRunState

    run = dag.test()
    assert run.state == DagRunState.SUCCESS, [(ti.task_id, ti.map_index, ti.state) for ti in run.task_instances]
    return run


def _values(run: Any, task_id: str, key: str = "return_value") -> list[Any]:
    """The task's XComs under ``key`` as stored in Airflow's metadata database, in map-index order."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key)
            .order_by(XComModel.map_index)
            .all()
        )
        return [XComModel.deserialize_value(row) for row in rows]


def single_sync_dag() -> Any:
    """One sync, models from a templated param, and a downstream task that reads the XCom."""
    from airflow.sdk import DAG, task

    with DAG(
        "knit_start_sync_single",
        schedule=None,
        start_date=datetime(2024, 1, 1),
        params={"models": ["application_info", "application_stage"]},
    ) as dag:
        start = StartSyncOperator(
            task_id="start", destination=DESTINATION, integration_id="int_dag", models="{{ params.models | join(',') }}"
        )

        @task
        def report(started: dict[str, Any]) -> str:
            assert set(started) == {
                "sync_job_id",
                "sync_run_id",
                "integration_id",
                "started_at",
                "started_by",
                "waited_seconds",
            }
            return f"{started['integration_id']}:{started['sync_job_id']}:{started['sync_run_id']}"

        report(start.output)
    return dag


def mapped_sync_dag() -> Any:
    """One sync per integration through .partial().expand(), collected downstream."""
    from airflow.sdk import DAG, task

    with DAG("knit_start_sync_mapped", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        starts = StartSyncOperator.partial(task_id="start", destination=DESTINATION).expand(
            integration_id=["int_1", "int_2"]
        )

        @task
        def collect(started: list[dict[str, Any]]) -> list[str]:
            return sorted(f"{s['integration_id']}={s['sync_job_id']}" for s in started)

        collect(starts.output)
    return dag


def deferred_sync_dag() -> Any:
    """A sync that waits for its allConsumed in the triggerer, then hands its counts downstream."""
    from airflow.sdk import DAG, task

    with DAG("knit_start_sync_deferred", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        start = StartSyncOperator(
            task_id="start",
            destination=DESTINATION,
            integration_id="int_deferred",
            wait_for_completion=True,
            deferrable=True,
            poll_interval=30,
            timeout=120,
        )

        @task
        def report(done: dict[str, Any]) -> str:
            return f"{done['sync_run_id']}:{done['record_events']}:{done['consumed']}"

        report(start.output)
    return dag


@pytest.fixture
def dags(airflow_db: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Serve the test DAGs from their own DAG folder: dag.test() runs only DAGs its bundle holds."""
    from airflow import settings

    # Airflow's safe mode only parses files that mention both "airflow" and "dag".
    (tmp_path / "knit_start_sync_dags.py").write_text(
        "# airflow DAG file for the StartSyncOperator tests\n"
        f"from {__name__} import deferred_sync_dag, mapped_sync_dag, single_sync_dag\n"
        "single = single_sync_dag()\nmapped = mapped_sync_dag()\ndeferred = deferred_sync_dag()\n"
    )
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    return {"single": single_sync_dag(), "mapped": mapped_sync_dag(), "deferred": deferred_sync_dag()}


def test_dag_run_starts_a_sync_and_a_downstream_task_reads_its_xcom(dags, connections, knit, landing_db):
    before = db_now(landing_db)
    run = _run(dags["single"])

    assert _values(run, "report") == ["int_dag:sj_int_dag:sr_int_dag"]
    (started,) = _values(run, "start")
    assert datetime.fromisoformat(started["started_at"]) >= before
    (request,) = knit.received
    assert request["body"]["models"] == ["application_info", "application_stage"]
    assert request["auth"] == f"Bearer {API_KEY}"
    # Airflow 3 stores each extra link's URL as an XCom when the task finishes.
    assert _values(run, "start", key=KnitDashboardLink().xcom_key) == [DEFAULT_DASHBOARD_URL]


def test_mapped_over_integrations_each_gets_its_own_sync(dags, connections, knit):
    run = _run(dags["mapped"])

    assert _values(run, "collect") == [["int_1=sj_int_1", "int_2=sj_int_2"]]
    assert sorted(r["integration"] for r in knit.received) == ["int_1", "int_2"]


def test_deferred_wait_resumes_in_a_dag_run_and_hands_the_counts_downstream(dags, connections, knit, landing_db):
    # dag.test() resumes a deferred task with the event alone (no defer kwargs): the operator must
    # find the sync it started from its own XCom.
    knit.deliver = lambda data: land_a_completed_run(landing_db, data, records=4)
    run = _run(dags["deferred"])

    assert _values(run, "report") == ["sr_int_deferred:4:4"]


# -- OpenLineage -----------------------------------------------------------------------------------


def test_lineage_names_the_integrations_knit_dataset_and_the_landing_events_table(
    connections, knit, landing_db, monkeypatch
):
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "console")  # any transport turns the provider on
    op = StartSyncOperator(task_id="start", destination=DESTINATION, integration_id="int_lineage")

    lineage = op.get_openlineage_facets_on_complete(None)

    url = urlsplit(landing_db)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        (f"knit://{urlsplit(knit.url).netloc}", "int_lineage.ats_applications")
    ]
    (events,) = lineage.outputs
    assert (events.namespace, events.name) == (
        f"postgres://{url.hostname}:{url.port}",
        f"{url.path.lstrip('/')}.knit_landing.events",
    )
    fields = {f.name: f.type for f in events.facets["schema"].fields}
    assert fields["payload"] == "jsonb"
    assert fields["received_at"] == "timestamptz"


def test_lineage_defaults_to_the_connections_integration_and_names_no_table_without_landing(
    connections, knit, monkeypatch
):
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "console")
    connections(landing=None)

    lineage = StartSyncOperator(task_id="start", destination=DESTINATION).get_openlineage_facets_on_complete(None)

    assert [d.name for d in lineage.inputs] == ["int_default.ats_applications"]
    assert lineage.outputs == []


def test_lineage_is_nothing_while_openlineage_has_no_transport(connections):
    assert StartSyncOperator(task_id="start", destination=DESTINATION).get_openlineage_facets_on_complete(None) is None


# -- the documented body, retries, adopting Knit's own run, stopping -----------------------------


class _TaskInstance(_RecordingTI):
    """A task instance with the fields the operator keys its start record on."""

    def __init__(self, run_id: str, map_index: int = -1) -> None:
        super().__init__()
        self.dag_id, self.run_id, self.task_id, self.map_index = "knit_test_dag", run_id, "start", map_index


def test_rendered_params_reach_knits_body_and_none_means_not_set(connections, knit):
    StartSyncOperator(
        task_id="start",
        honor_scheduler="True",
        include_inactive_records="None",
        start_hour="7",
        start_minute=30,
        frequency="",
        destination="None",
    ).execute({})
    (request,) = knit.received
    assert request["body"] == {
        "dataType": "ats_applications",
        "models": list(ATS_APPLICATION_MODELS),
        "honorScheduler": True,
        "startHour": 7,
        "startMinute": 30,
    }


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("start_hour", "24", "start_hour must be a whole number from 0 to 23"),
        ("start_minute", "half past", "start_minute must be a whole number, got 'half past'."),
        ("honor_scheduler", "yes", "honor_scheduler must be true or false, got 'yes'."),
    ],
)
def test_unreadable_params_fail_before_any_call(connections, knit, field, value, complaint):
    with pytest.raises(KnitConfigurationError, match=complaint):
        StartSyncOperator(task_id="start", **{field: value}).execute({})
    assert knit.received == []


def _record_unanswered_start(url: str, ti: _TaskInstance, integration: str) -> None:
    from knit_provider.landing import starts
    from knit_provider.settings import Schemas

    key = starts.AttemptKey(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            starts.record_request(cur, Schemas(), key, integration, "ats_applications")
    finally:
        conn.close()


def test_a_retry_after_an_unanswered_start_attaches_to_the_run_that_began(connections, knit, landing_db):
    from knit_landing_helpers import Lander

    ti = _TaskInstance("manual__unanswered")
    _record_unanswered_start(landing_db, ti, "int_lost")  # the earlier try sent sync.start; no answer came
    lander = Lander(landing_db, integration_id="int_lost")
    lander.records("sj_lost", "sr_lost", 2)  # the run that call began
    lander.close()

    result = StartSyncOperator(task_id="start", integration_id="int_lost", unknown_outcome_grace=5).execute(
        {"ti": ti}  # type: ignore[arg-type]
    )

    assert (result["sync_job_id"], result["sync_run_id"], result["started_by"]) == ("sj_lost", "sr_lost", "airflow")
    assert knit.received == [], "sync.start must not be sent again"


def test_a_retry_after_an_unanswered_start_starts_once_no_run_began_within_the_grace(connections, knit, landing_db):
    ti = _TaskInstance("manual__unanswered_none")
    _record_unanswered_start(landing_db, ti, "int_quiet")

    result = StartSyncOperator(task_id="start", integration_id="int_quiet", unknown_outcome_grace=0.2).execute(
        {"ti": ti}  # type: ignore[arg-type]
    )

    assert result["sync_job_id"] == "sj_int_quiet"
    assert len(knit.received) == 1


def test_adopting_returns_the_run_knit_began_without_calling_knit(connections, knit, landing_db):
    from knit_landing_helpers import Lander
    from structlog.testing import capture_logs

    lander = Lander(landing_db, integration_id="int_adopt")
    since = lander.now()
    lander.records("sj_knit", "sr_knit", 3)  # Knit's automatic initial sync, begun after the activation
    lander.close()
    ti = _TaskInstance("asset__adopt")
    op = StartSyncOperator(
        task_id="start", integration_id="int_adopt", adopt_since=since.isoformat(), adopt_grace="60", deferrable=False
    )

    with capture_logs() as logs:
        result = op.execute({"ti": ti})  # type: ignore[arg-type]

    assert (result["sync_job_id"], result["sync_run_id"], result["started_by"]) == ("sj_knit", "sr_knit", "knit")
    assert knit.received == []
    assert any(str(e["event"]).startswith("Knit started it: run sr_knit (first event at ") for e in logs), logs
    # A retry of the task reuses it: still no call to Knit.
    again = StartSyncOperator(task_id="start", integration_id="int_adopt").execute({"ti": ti})  # type: ignore[arg-type]
    assert {**again, "started_at": None} == {**result, "started_at": None}
    assert datetime.fromisoformat(again["started_at"]) == datetime.fromisoformat(result["started_at"])
    assert knit.received == []


def test_adopting_starts_a_sync_when_no_run_began_within_the_grace(connections, knit, landing_db):
    from structlog.testing import capture_logs

    op = StartSyncOperator(
        task_id="start",
        integration_id="int_no_knit_run",
        adopt_since=db_now(landing_db).isoformat(),
        adopt_grace=0.3,
        deferrable=False,
    )
    with capture_logs() as logs:
        result = op.execute({"ti": _TaskInstance("asset__no_adopt")})  # type: ignore[arg-type]

    assert (result["sync_job_id"], result["started_by"]) == ("sj_int_no_knit_run", "airflow")
    assert result["waited_seconds"] == pytest.approx(0.3, abs=0.01)
    assert len(knit.received) == 1
    assert "started by Airflow after 0.0 min: no run of int_no_knit_run began within the grace period" in [
        str(e["event"]) for e in logs
    ]


def test_adopting_defers_to_the_run_began_trigger(connections, knit, landing_db):
    from airflow.providers.common.compat.sdk import TaskDeferred

    from knit_provider.triggers.run_began import RunBeganTrigger

    op = StartSyncOperator(
        task_id="start",
        integration_id="int_d",
        sync_type="initial_sync",
        adopt_since="2030-01-01T00:00:00Z",
        adopt_grace=300,
    )
    with pytest.raises(TaskDeferred) as info:
        op.execute({"ti": _TaskInstance("asset__defer")})  # type: ignore[arg-type]

    assert info.value.method_name == "execute_adopt"
    assert isinstance(info.value.trigger, RunBeganTrigger)
    _, kwargs = info.value.trigger.serialize()
    assert (kwargs["integration_id"], kwargs["sync_type"], kwargs["grace"]) == ("int_d", "initial_sync", 300.0)
    assert knit.received == []


def test_on_kill_says_the_knit_run_goes_on(connections, knit):
    from structlog.testing import capture_logs

    op = StartSyncOperator(task_id="start", integration_id="int_kill")
    op.execute({})
    with capture_logs() as logs:
        op.on_kill()
    assert (
        "Knit has no call to stop a sync: run sr_int_kill of job sj_int_kill goes on; "
        "the on-delivery DAG of its data type (knit_<data type>_on_delivery) normalizes it when it completes"
    ) in [str(e["event"]) for e in logs]
