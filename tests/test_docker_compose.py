"""docker-compose.yaml and the Dockerfile: valid, complete, and naming only things that exist.

No container engine runs here, so the file is checked statically: parsed with PyYAML, rendered
by ``docker-compose config`` (Debian's ``docker-compose`` package) when it is installed, and every
command, module, flag, health endpoint and copied path it names is looked up in the project.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
REQUIRED_ENV = {"KNIT_API_KEY": "test-key", "AIRFLOW_JWT_SECRET": "test-secret"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def _commands(service: dict[str, Any]) -> list[list[str]]:
    """The argv of each command a service runs (``bash -c "a && b"`` is split into a and b)."""
    command = service.get("command", [])
    argv = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    if argv[:2] == ["bash", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


def _flags_of(module: str) -> set[str]:
    """The flags ``python -m <module> --help`` lists."""
    help_text = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    ).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", help_text))


def test_every_component_is_there_with_a_health_check(services: dict[str, Any]) -> None:
    expected = {"postgres", "airflow-init", *AIRFLOW_SERVICES, "knit-webhook", "knit-simulator"}
    assert expected <= set(services)
    for name, service in services.items():
        if name != "airflow-init":
            assert "healthcheck" in service, f"{name} needs a health check"
    assert services["knit-simulator"]["profiles"] == ["demo"]
    assert "profiles" not in services["knit-webhook"]


def test_airflow_components_run_their_commands_on_the_built_image(services: dict[str, Any]) -> None:
    from airflow.cli import cli_config

    airflow_commands = {command.name for command in cli_config.core_commands}
    for name, subcommand in AIRFLOW_SERVICES.items():
        service = services[name]
        assert _commands(service) == [[subcommand]], name
        assert subcommand in airflow_commands
        assert service["build"] == ".", f"{name} must run the image with the package installed"
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_connections_come_from_the_environment(services: dict[str, Any]) -> None:
    import json

    for name in [*AIRFLOW_SERVICES, "airflow-init", "knit-webhook"]:
        env = services[name]["environment"]
        assert env["AIRFLOW_CONN_KNIT_LANDING_DEFAULT"].startswith("postgresql://"), name
        rendered = re.sub(r"\$\{[^}]*\}", "x", env["AIRFLOW_CONN_KNIT_DEFAULT"])
        knit = json.loads(rendered)
        assert knit["conn_type"] == "knit"
        assert "integration_id" in knit["extra"]
        # The webhook is set per category in Knit's dashboard; the simulator plays that with --destination.
        assert "webhook_url" not in knit["extra"]


def test_python_modules_and_flags_exist(services: dict[str, Any]) -> None:
    checked = 0
    for name, service in services.items():
        for argv in _commands(service):
            if argv[:2] != ["python", "-m"]:
                continue
            module, args = argv[2], argv[3:]
            assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
            assert importlib.util.find_spec(module + ".__main__") is not None, f"{name}: {module} is not runnable"
            flags = {arg.split("=")[0] for arg in args if arg.startswith("--")}
            unknown = flags - _flags_of(module)
            assert not unknown, f"{name}: python -m {module} has no {sorted(unknown)}"
            positional = [arg for arg in args if not arg.startswith("-")]
            if module == "knit_provider" and positional:
                from knit_provider.__main__ import build_parser

                build_parser().parse_args(args)  # exits (fails the test) on an unknown subcommand
            checked += 1
    assert checked >= 3, "the init, receiver and simulator commands must all be checked"


def test_health_checks_probe_real_endpoints(services: dict[str, Any]) -> None:
    from knit_provider.webhook.app import create_app
    from knit_provider.webhook.settings import resolve_settings

    app = create_app(resolve_settings(database_url="postgresql://u@127.0.0.1:1/db", secret="s"))
    paths = {getattr(route, "path", None) for route in app.routes}
    assert {"/health", "/webhook"} <= paths
    assert "http://localhost:8000/health" in services["knit-webhook"]["healthcheck"]["test"]
    assert "http://localhost:8080/api/v2/monitor/health" in services["airflow-apiserver"]["healthcheck"]["test"]
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    from airflow.cli import cli_config

    job_types = set(cli_config.ARG_JOB_TYPE_FILTER.kwargs["choices"])
    for name in ("airflow-dag-processor", "airflow-triggerer"):
        probe = " ".join(services[name]["healthcheck"]["test"])
        (job_type,) = re.findall(r"--job-type (\w+)", probe)
        assert job_type in job_types, f"{name}: airflow jobs check has no job type {job_type}"


def test_only_the_receiver_s_port_is_published_beyond_loopback(services: dict[str, Any]) -> None:
    """Knit reaches the standalone receiver's port; Airflow's UI and APIs, and the simulator, stay on 127.0.0.1."""
    published = {
        name: [str(port) for port in service.get("ports", [])]
        for name, service in services.items()
        if "ports" in service
    }
    assert published.pop("knit-webhook") == ["8000:8000"]
    assert published == {"airflow-apiserver": ["127.0.0.1:8080:8080"], "knit-simulator": ["127.0.0.1:8765:8765"]}


def test_dockerfile_builds_from_the_pinned_airflow_and_copies_what_exists() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pins = (ROOT / "requirements.txt").read_text()
    airflow_pin = re.search(r"^apache-airflow==(\S+)$", pins, re.MULTILINE)
    assert airflow_pin is not None
    assert f"FROM apache/airflow:{airflow_pin.group(1)}" in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith("COPY"):
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored
    assert ".git" in ignored


def test_postgres_init_script_creates_the_landing_database(services: dict[str, Any]) -> None:
    mount = next(v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v)
    scripts = list((ROOT / mount.split(":")[0]).glob("*.sh"))
    assert scripts
    assert all(os.access(script, os.X_OK) for script in scripts)
    assert "CREATE DATABASE knit" in scripts[0].read_text()


DOCKER_COMPOSE = shutil.which("docker-compose")


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose not installed (apt-get install docker-compose)")
def test_docker_compose_config_accepts_the_file_and_demands_the_secrets() -> None:
    assert DOCKER_COMPOSE is not None
    env = {**os.environ, **REQUIRED_ENV}
    rendered = subprocess.run(
        [DOCKER_COMPOSE, "--profile", "demo", "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "knit-simulator" in yaml.safe_load(rendered.stdout)["services"]
    for missing in REQUIRED_ENV:
        without = {k: v for k, v in env.items() if k != missing}
        refused = subprocess.run(
            [DOCKER_COMPOSE, "config", "-q"], cwd=ROOT, env=without, capture_output=True, text=True, timeout=60
        )
        assert refused.returncode != 0
        assert f"set {missing}" in refused.stderr
