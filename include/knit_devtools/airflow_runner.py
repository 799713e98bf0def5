"""Run this project's DAGs with real Airflow commands, in a throwaway Airflow home.

Two ways, both used by the demo and the end-to-end tests:

- ``AirflowHome.dags_test``: ``airflow dags test`` in a subprocess (one process, triggers run
  in-process; the quickest honest run of a whole DAG).
- ``AirflowCluster``: the API server, scheduler, DAG processor and triggerer as separate
  processes with the LocalExecutor, as in production, so deferred tasks really go through the
  triggerer and asset watchers really watch. Its metadata database should be Postgres: SQLite
  serializes every writer and the four processes then trip over "database is locked".
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from knit_devtools.embedded_postgres import free_port
from knit_devtools.services import Service, wait_until

ROOT = Path(__file__).resolve().parents[2]


class AirflowCommandError(RuntimeError):
    """An ``airflow`` command exited non-zero; the message carries the end of its output."""


class AirflowHome:
    """An ``AIRFLOW_HOME`` with this project's DAGs and plugins and a metadata database.

    :param path: the home directory; a temporary one by default.
    :param metadata_url: SQLAlchemy URL of the metadata database; SQLite in the home by default.
    :param env: extra environment (typically ``Stack.airflow_env()``: the Knit connections).
    """

    def __init__(
        self, path: Path | None = None, *, metadata_url: str | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.path = Path(path or tempfile.mkdtemp(prefix="knit-airflow-")).resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self.metadata_url = metadata_url or f"sqlite:///{self.path / 'airflow.db'}"
        self.api_port = free_port()
        self.env: dict[str, str] = dict(os.environ)
        self.env.update(
            {
                "AIRFLOW_HOME": str(self.path),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
                # Every component must sign and check the same tokens.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
        if env:
            self.env.update(env)

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` to completion; raise ``AirflowCommandError`` with its output on failure."""
        cmd = [sys.executable, "-m", "airflow", *args]
        try:
            done = subprocess.run(
                cmd, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AirflowCommandError(f"`airflow {' '.join(args)}` did not finish in {timeout:.0f}s") from exc
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr)[-6000:]
            raise AirflowCommandError(f"`airflow {' '.join(args)}` exited with {done.returncode}:\n{output}")
        return done

    def migrate(self) -> AirflowHome:
        """Create or upgrade the metadata database."""
        self.run("db", "migrate")
        return self

    def dags_test(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        logical_date: str | None = None,
        timeout: float = 900,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run one DAG run start to end with ``airflow dags test``; the output holds every task's log."""
        args = ["dags", "test", dag_id]
        if logical_date:
            args.append(logical_date)
        if conf:
            args += ["--conf", json.dumps(dict(conf))]
        return self.run(*args, timeout=timeout, check=check)

    def latest_asset_event(self, asset_name: str, dag_id: str, after: int = 0) -> AssetEventRecord | None:
        """The newest event of the asset named ``asset_name`` that a task of ``dag_id`` emitted, read from this
        home's metadata database (what a DAG scheduled on the asset receives); None when there is none newer
        than the event id ``after``.

        By the asset's name, not its URI: Airflow stores the URI normalized (``knit://ats_applications/``)."""
        import sqlalchemy

        query = sqlalchemy.text(
            "SELECT e.id, e.extra FROM asset_event AS e JOIN asset AS a ON a.id = e.asset_id "
            "WHERE a.name = :name AND e.source_dag_id = :dag_id AND e.id > :after ORDER BY e.id DESC LIMIT 1"
        ).columns(id=sqlalchemy.Integer, extra=sqlalchemy.JSON)
        engine = sqlalchemy.create_engine(self.metadata_url)
        try:
            with engine.connect() as conn:
                row = conn.execute(query, {"name": asset_name, "dag_id": dag_id, "after": after}).first()
        finally:
            engine.dispose()
        return None if row is None else AssetEventRecord(int(row.id), dict(row.extra or {}))


@dataclass(frozen=True)
class AssetEventRecord:
    """One row of Airflow's ``asset_event``: its id (newer events have higher ones) and its ``extra``."""

    id: int
    extra: dict[str, Any]


class AirflowCluster:
    """Airflow's own processes on an ``AirflowHome``: api-server, scheduler, dag-processor, triggerer.

    The API server runs with every user an admin (local only, on 127.0.0.1), so ``api()`` needs
    no token, unless the home's environment turns that off (``simple_auth_manager_all_admins``):
    then ``login()`` gets a token that ``api()`` sends. Stops every process on exit.
    """

    def __init__(self, home: AirflowHome) -> None:
        self.home = home
        self.token: str | None = None
        logs = home.path / "process-logs"
        scheduler_health_port = free_port()
        env = dict(home.env)
        env.update(
            {
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(scheduler_health_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                # Small and quick: new DAG files and runs are noticed within seconds.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            }
        )
        airflow = [sys.executable, "-m", "airflow"]
        self.api_server = Service(
            "api-server",
            [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(home.api_port)],
            log_path=logs / "api-server.log",
            env=env,
            cwd=ROOT,
            ready_url=f"http://127.0.0.1:{home.api_port}/api/v2/monitor/health",
        )
        self.scheduler = Service(
            "scheduler",
            [*airflow, "scheduler"],
            log_path=logs / "scheduler.log",
            env=env,
            cwd=ROOT,
            ready_url=f"http://127.0.0.1:{scheduler_health_port}/health",
        )
        self.dag_processor = Service(
            "dag-processor", [*airflow, "dag-processor"], log_path=logs / "dag-processor.log", env=env, cwd=ROOT
        )
        self.triggerer = Service(
            "triggerer", [*airflow, "triggerer"], log_path=logs / "triggerer.log", env=env, cwd=ROOT
        )
        self.services = [self.api_server, self.dag_processor, self.triggerer, self.scheduler]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.home.api_port}"

    def start(self, ready_timeout: float = 180) -> AirflowCluster:
        try:
            for service in self.services:
                service.start(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def __enter__(self) -> AirflowCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the REST API (v2) ----------------------------------------------------------------------
    def login(self, username: str, password: str) -> str:
        """Get a token for a simple-auth-manager user; ``api()`` sends it from then on."""
        request = urllib.request.Request(
            f"{self.api_url}/auth/token",
            method="POST",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            self.token = str(json.loads(response.read())["access_token"])
        return self.token

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call ``/api/v2<path>`` and return the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(f"{self.api_url}/api/v2{path}", data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the DAG processor has parsed and stored ``dag_id``."""

        def parsed() -> bool:
            try:
                self.api("GET", f"/dags/{dag_id}")
            except OSError:
                return False
            return True

        self._wait(parsed, timeout, f"DAG {dag_id} to be parsed")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, logical_date: str | None = None) -> str:
        """Create a manual DAG run and return its run id."""
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", {"conf": dict(conf or {}), "logical_date": logical_date})
        return str(run["dag_run_id"])

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/dags/{dag_id}/dagRuns?limit=100&order_by=id")["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances?limit=1000"
        return list(self.api("GET", path)["task_instances"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """Wait until a DAG run has finished; return its final state."""
        quoted = quote(run_id, safe="")
        state: dict[str, str] = {}

        def finished() -> bool:
            state["value"] = self.api("GET", f"/dags/{dag_id}/dagRuns/{quoted}")["state"]
            return state["value"] in ("success", "failed")

        self._wait(finished, timeout, f"DAG run {dag_id}/{run_id} to finish")
        return state["value"]

    def _wait(self, condition: Any, timeout: float, what: str) -> None:
        def alive_and(condition_now: Any = condition) -> bool:
            for service in self.services:
                if not service.running:
                    raise RuntimeError(f"{service.name} died; see {service.log_path}")
            return bool(condition_now())

        wait_until(alive_and, timeout, what, interval=0.5)
