"""The whole pipeline outside Airflow, on one machine: Postgres, the Knit simulator and the receiver.

The demo, the end-to-end tests, the fault-injection tests and the pipeline benchmark all need the
same three servers wired together, so they share this one helper::

    with Stack(applications=2_000, seed=7) as stack:
        env = {**os.environ, **stack.airflow_env()}   # connections for Airflow / the CLI
        stack.kill_receiver(); stack.start_receiver()  # fault injection
        truth = stack.sim.truth(stack.integration_ids[0])

Every process logs to a file under ``stack.work_dir``; a process that dies or is not ready by
its deadline raises ``ServiceError`` with the end of its log.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from knit_devtools.embedded_postgres import EmbeddedPostgres, free_port
from knit_devtools.services import Service, ServiceError
from knit_simulator.testing import SimulatorProcess

__all__ = ["DEFAULT_INTEGRATION_ID", "Stack", "StackError"]

DEFAULT_INTEGRATION_ID = "demo-integration"
StackError = ServiceError


class Stack:
    """Start Postgres (embedded unless ``database_url`` is given), the simulator and the receiver.

    :param applications: applications the simulator holds per integration.
    :param seed: the simulator's seed; the same seed gives the same data set.
    :param database_url: an existing database to land in (its landing schema is migrated);
        ``None`` starts an embedded server and creates a ``knit`` database on it.
    :param pg_data_dir: where the embedded server keeps its data; ``None`` is a temporary
        directory removed on stop. With a directory, the data is kept (see ``keep_database``).
    :param keep_database: leave the embedded server's data directory on stop (the demo does,
        so the user can look at the tables afterwards).
    :param integration_ids: integrations the Airflow connection and the tests use.
    :param simulator_args: extra command-line flags for the simulator (faults, concurrency...).
    :param receiver_args: extra command-line flags for the receiver.
    :param work_dir: where logs go; a temporary directory by default.
    """

    def __init__(
        self,
        *,
        applications: int = 2_000,
        seed: int = 7,
        database_url: str | None = None,
        pg_data_dir: Path | None = None,
        keep_database: bool = False,
        integration_ids: Sequence[str] = (DEFAULT_INTEGRATION_ID,),
        api_key: str | None = None,
        simulator_args: Sequence[str] = (),
        receiver_args: Sequence[str] = (),
        work_dir: Path | None = None,
        fsync: bool = True,
    ) -> None:
        if not integration_ids:
            raise ValueError("integration_ids must name at least one integration")
        self.applications = applications
        self.seed = seed
        self.integration_ids = list(integration_ids)
        self.api_key = api_key or "sim_" + secrets.token_urlsafe(24)
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="knit-stack-")).resolve()
        self._given_database_url = database_url
        self._keep_database = keep_database
        self._postgres: EmbeddedPostgres | None = None
        if database_url is None:
            self._postgres = EmbeddedPostgres(data_dir=pg_data_dir, fsync=fsync)
        self.database_url = database_url or ""
        self.simulator_port = free_port()
        self.receiver_port = free_port()
        python = sys.executable
        self.simulator = Service(
            "simulator",
            [
                python,
                "-m",
                "knit_simulator",
                "--port",
                str(self.simulator_port),
                "--applications",
                str(applications),
                "--seed",
                str(seed),
                # The webhook configured for the ATS category in Knit's dashboard: sync.start names none.
                "--destination",
                self.webhook_url,
                *simulator_args,
            ],
            log_path=self.work_dir / "simulator.log",
            ready_url=self.simulator_url + "/",
            ready_statuses=range(100, 600),
        )
        self.receiver = Service(
            "receiver",
            [
                python,
                "-m",
                "knit_provider.webhook",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.receiver_port),
                *receiver_args,
            ],
            log_path=self.work_dir / "receiver.log",
            ready_url=self.receiver_url + "/health",
        )

    # -- addresses -----------------------------------------------------------------------------
    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    @property
    def webhook_url(self) -> str:
        """The URL Knit (the simulator) delivers to: the webhook configured for the ATS category."""
        return self.receiver_url + "/webhook"

    @property
    def pg_data_dir(self) -> Path | None:
        return self._postgres.data_dir if self._postgres is not None else None

    def knit_connection(self, integration_id: str | None = None) -> dict[str, Any]:
        """The ``knit_default`` connection pointing at the simulator, as Airflow's JSON form."""
        return {
            "conn_type": "knit",
            "host": self.simulator_url,
            "password": self.api_key,
            "extra": {"integration_id": integration_id or self.integration_ids[0]},
        }

    def airflow_env(self) -> dict[str, str]:
        """Environment variables that configure Airflow, the receiver and the CLI for this stack."""
        from knit_provider.database_urls import connection_from_url

        return {
            "AIRFLOW_CONN_KNIT_DEFAULT": json.dumps(self.knit_connection()),
            # JSON, not the URL: Airflow's URI parser reads one host from the netloc, so a socket given
            # as ?host=/dir or several hosts would reach the hook as a connection without a host.
            "AIRFLOW_CONN_KNIT_LANDING_DEFAULT": json.dumps(connection_from_url(self.database_url)),
        }

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, ready_timeout: float = 60.0) -> Stack:
        """Start every part, in dependency order, each ready before the next starts."""
        try:
            if self._postgres is not None:
                self._postgres.start()
                self.database_url = self._create_database("knit")
            self.migrate()
            env = self._child_env()
            self.simulator.env = env
            self.receiver.env = env
            self.simulator.start(ready_timeout)
            self.receiver.start(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _create_database(self, name: str) -> str:
        import psycopg2

        assert self._postgres is not None
        conn = psycopg2.connect(self._postgres.url())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self._postgres.url(name)

    def migrate(self) -> None:
        """Create the landing schema (the receiver would on start; tests may query before that)."""
        import psycopg2

        from knit_provider.landing.migrate import migrate

        conn = psycopg2.connect(self.database_url)
        try:
            migrate(conn)
        finally:
            conn.close()

    def _child_env(self) -> dict[str, str]:
        import os

        env = dict(os.environ)
        env.update(self.airflow_env())
        env["PYTHONUNBUFFERED"] = "1"
        env["KNIT_SIMULATOR_API_KEY"] = self.api_key  # not a flag: flags show in `ps`
        # The receiver reads connections through Airflow's SDK; keep it away from ~/airflow.
        env.setdefault("AIRFLOW_HOME", str(self.work_dir / "airflow"))
        return env

    def stop(self) -> None:
        """Stop everything this stack started; the embedded database's data is kept if asked."""
        self.receiver.stop()
        self.simulator.stop()
        if self._postgres is not None:
            if self._keep_database:
                self._postgres.stop()
            else:
                self._postgres.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the receiver, for fault injection -----------------------------------------------------
    def start_receiver(self, ready_timeout: float = 60.0) -> None:
        self.receiver.start(ready_timeout)

    def stop_receiver(self) -> None:
        self.receiver.stop()

    def kill_receiver(self) -> None:
        """SIGKILL the receiver: requests in flight get no answer, as in a crash."""
        self.receiver.kill()

    def restart_receiver(self, ready_timeout: float = 60.0) -> None:
        self.receiver.restart(ready_timeout)

    # -- the simulator's API ----------------------------------------------------------------------
    @property
    def sim(self) -> SimulatorProcess:
        """A client of the running simulator: ``runs()``, ``wait_job()``, ``trigger_run()``, ``truth()``..."""
        if self.simulator.process is None:
            raise StackError("the simulator is not running")
        return SimulatorProcess(self.simulator.process, self.simulator_url, self.api_key, self.simulator.log_path)
