"""One DAG run over many integrations under Airflow's own scheduler and triggerer: time and connections.

``knit_ats_applications`` is triggered once with ``integration_ids`` listing every integration (small
data each, from the simulator), so one DAG run maps its sync group over all of them: ``sync.start``
for each, a deferred wait per integration in the triggerer, normalize and reconcile. The landing
database gets ``CONNECTION LIMIT 100`` (a Postgres with ``max_connections = 100`` serving it alone);
Airflow's metadata lives in another database on the same server.

The receiver is kept down until all the waits are deferred (see ``run``), then started. Measured:
time from the trigger to every wait deferred, with the connections the triggerer's shared listener
holds then; time from the receiver's start to every integration's run normalized
(``knit.normalized_runs``); time from the trigger to the DAG run's success; the peak of connections
to the landing database (sampled every 0.2 s from ``pg_stat_activity``) and of the listener's.
``python -m bench.bench_many_integrations [--full] [--integrations N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from knit_devtools.airflow_runner import AirflowCluster, AirflowHome
from knit_devtools.services import wait_until
from knit_devtools.stack import Stack

MAIN = "knit_ats_applications"
LANDING_CONNECTION_LIMIT = 100
APPLICATIONS_PER_INTEGRATION = 5


class ConnectionSampler:
    """Sample, every 0.2 s, the connections to the landing database: all, and the triggers' listener."""

    def __init__(self, admin_url: str, database: str) -> None:
        self._admin_url = admin_url
        self._database = database
        self.peak_all = 0
        self.peak_listener = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psycopg2

        from knit_provider.triggers.listener import APPLICATION_NAME

        conn = psycopg2.connect(self._admin_url)
        conn.autocommit = True
        try:
            while not self._stop.wait(0.2):
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT count(*), count(*) FILTER (WHERE application_name = %s) "
                        "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                        (APPLICATION_NAME, self._database),
                    )
                    every, listener = cur.fetchone()
                self.peak_all = max(self.peak_all, int(every))
                self.peak_listener = max(self.peak_listener, int(listener))
        finally:
            conn.close()

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _normalized(url: str) -> int:
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('knit.normalized_runs') IS NOT NULL")
            if not cur.fetchone()[0]:
                return 0
            cur.execute("SELECT count(*) FROM knit.normalized_runs")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def run(full: bool = False, integrations: int | None = None) -> dict[str, Any]:
    count = integrations or (200 if full else 40)
    ids = [f"int-{i:04d}" for i in range(count)]
    work = Path(tempfile.mkdtemp(prefix="bench-many-"))
    with Stack(
        applications=APPLICATIONS_PER_INTEGRATION,
        seed=5,
        integration_ids=ids,
        work_dir=work / "stack",
        fsync=False,
    ) as stack:
        parts = urlsplit(stack.database_url)
        database = parts.path.lstrip("/")
        admin_url = urlunsplit(parts._replace(path="/postgres"))
        import psycopg2

        admin = psycopg2.connect(admin_url)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{database}" CONNECTION LIMIT {LANDING_CONNECTION_LIMIT}')
            cur.execute('CREATE DATABASE "airflow_metadata"')
        admin.close()
        home = AirflowHome(
            work / "airflow",
            metadata_url=urlunsplit(parts._replace(scheme="postgresql+psycopg2", path="/airflow_metadata")),
            env=stack.airflow_env(),
        ).migrate()
        with AirflowCluster(home) as cluster, ConnectionSampler(admin_url, database) as sampler:
            cluster.wait_for_dag(MAIN)
            # Unpausing makes the scheduler start a run for the latest interval (the connection's one
            # integration): let it finish first, so the measured run is alone and Airflow is warm.
            cluster.unpause(MAIN)
            wait_until(
                lambda: any(r["state"] == "success" for r in cluster.dag_runs(MAIN)),
                600,
                "the scheduled run of the default integration",
                interval=2.0,
            )
            before = _normalized(stack.database_url)
            # The receiver is down until every wait has been deferred: Knit (the simulator) keeps
            # retrying its deliveries, no run can complete, and all the waits sit in the triggerer at
            # once, as they do when syncs take longer than Airflow takes to start them all. (Small
            # runs delivered at once would complete before their sensor's first look: Airflow runs
            # the mapped start_sync tasks before the waits, which weigh less.)
            stack.stop_receiver()
            started = time.monotonic()
            dag_run_id = cluster.trigger(MAIN, conf={"integration_ids": ids})
            peak_deferred = 0
            all_normalized: float | None = None

            def deferred() -> int:
                """Deferred task instances of the run (only the waits defer); counted by the API, which
                pages its lists at 100 entries, fewer than a run over many integrations holds."""
                nonlocal peak_deferred
                path = f"/dags/{MAIN}/dagRuns/{quote(dag_run_id, safe='')}/taskInstances?state=deferred&limit=1"
                now = int(cluster.api("GET", path)["total_entries"])
                peak_deferred = max(peak_deferred, now)
                return now

            wait_until(lambda: deferred() >= count, 3600, f"{count} waits deferred to the triggerer", interval=2.0)
            all_deferred = time.monotonic() - started
            listener_with_all_deferred = sampler.peak_listener
            stack.start_receiver()
            receiver_up = time.monotonic()

            def progressed() -> bool:
                nonlocal all_normalized
                if all_normalized is None and _normalized(stack.database_url) >= before + count:
                    all_normalized = time.monotonic() - receiver_up
                run_state = next(r["state"] for r in cluster.dag_runs(MAIN) if r["dag_run_id"] == dag_run_id)
                if run_state == "failed":
                    raise RuntimeError(f"the DAG run failed; logs under {home.path / 'logs'}")
                return bool(run_state == "success")

            wait_until(progressed, 3600, f"the DAG run over {count} integrations", interval=2.0)
            finished = time.monotonic() - started
    return {
        "benchmark": "many_integrations",
        "integrations": count,
        "applications_per_integration": APPLICATIONS_PER_INTEGRATION,
        "landing_connection_limit": LANDING_CONNECTION_LIMIT,
        "airflow_parallelism": int(home.env["AIRFLOW__CORE__PARALLELISM"]),
        "seconds_to_all_waits_deferred": round(all_deferred, 1),
        "listener_connections_with_all_deferred": listener_with_all_deferred,
        "seconds_from_deliveries_to_all_normalized": None if all_normalized is None else round(all_normalized, 1),
        "seconds_to_dag_run_success": round(finished, 1),
        "peak_landing_connections": sampler.peak_all,
        "peak_listener_connections": sampler.peak_listener,
        "peak_deferred_waits": peak_deferred,
        "load_avg_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="200 integrations (default 40)")
    parser.add_argument("--integrations", type=int, help="how many integrations to map over")
    args = parser.parse_args()
    print(json.dumps(run(full=args.full, integrations=args.integrations)), flush=True)


if __name__ == "__main__":
    main()
