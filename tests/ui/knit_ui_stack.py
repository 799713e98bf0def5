"""What the browser tests share: Airflow with real logins, and the system's Chromium driven by Playwright.

The API server runs with Airflow's simple auth manager and a known user (not "everyone is admin"),
so the tests see the login page, the cookie the UI works with, and a refused anonymous request.
Chromium is Debian's package (``apt-get install chromium``); Playwright's own browser download is
never used.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from knit_devtools.airflow_runner import AirflowCluster, AirflowHome
from knit_devtools.stack import Stack

MAIN = "knit_ats_applications"
ON_DELIVERY = "knit_ats_applications_on_delivery"
INTEGRATION = "int-acme"
USERNAME = "admin"
#: The ``dashboard_url`` of the tests' ``knit_default``: a made-up Knit URL naming the sync job.
SYNC_JOB_URL = "https://knit.example.test/jobs/{sync_job_id}"
CHROMIUM = os.environ.get("KNIT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where `make screenshots` asks the tests to save the README's pictures.
SCREENSHOT_DIR_ENV = "KNIT_SCREENSHOT_DIR"


def auth_env(home: Path, password: str) -> dict[str, str]:
    """Environment for an Airflow home whose one user is ``admin`` with ``password`` (role admin)."""
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USERNAME: password}))
    return {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }


class UiStack:
    """The simulator, the receiver and Airflow's four processes, with a logged-in REST client."""

    def __init__(self, stack: Stack, cluster: AirflowCluster, password: str) -> None:
        self.stack = stack
        self.cluster = cluster
        self.password = password

    @property
    def url(self) -> str:
        return self.cluster.api_url

    def cookie(self) -> dict[str, Any]:
        """The session cookie the UI sets after a login, for a browser context that skips the login form."""
        assert self.cluster.token, "log in first"
        return {"name": "_token", "value": self.cluster.token, "url": self.url}


@contextmanager
def ui_stack(database_url: str, metadata_url: str, home_dir: Path, applications: int = 40) -> Iterator[UiStack]:
    """Start everything, wait until both DAGs are parsed, and log the REST client in."""
    password = secrets.token_urlsafe(12)
    with Stack(
        applications=applications,
        seed=5,
        database_url=database_url,
        integration_ids=[INTEGRATION],
        simulator_args=["--retry-max-delay", "1"],
    ) as stack:
        home_dir.mkdir(parents=True, exist_ok=True)
        knit = stack.knit_connection()
        knit["extra"]["dashboard_url"] = SYNC_JOB_URL  # so the task's Knit link opens the sync job
        env = {**stack.airflow_env(), **auth_env(home_dir, password), "AIRFLOW_CONN_KNIT_DEFAULT": json.dumps(knit)}
        home = AirflowHome(home_dir, metadata_url=metadata_url, env=env).migrate()
        with AirflowCluster(home) as cluster:
            cluster.login(USERNAME, password)
            for dag_id in (MAIN, ON_DELIVERY):
                cluster.wait_for_dag(dag_id)
            yield UiStack(stack, cluster, password)


def check_chromium() -> str:
    """The Chromium binary to drive; fail with what to install when it is missing."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise RuntimeError(
            f"No Chromium at {CHROMIUM}: the browser tests drive the system's Chromium. Install it with "
            "`apt-get install chromium` (Debian/Ubuntu; .ci/run does), or point KNIT_TEST_CHROMIUM at a "
            "Chromium binary. Playwright's own browser download is not used."
        )
    return CHROMIUM


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium with a fresh profile, closed (and its profile removed) on exit."""
    from playwright.sync_api import sync_playwright

    executable = check_chromium()
    profile = tempfile.mkdtemp(prefix="knit-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1400, "height": 900},
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(page: Any, name: str, **options: Any) -> None:
    """Save a README picture when `make screenshots` asked for them (``KNIT_SCREENSHOT_DIR``)."""
    target = os.environ.get(SCREENSHOT_DIR_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name), **options)
