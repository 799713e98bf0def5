"""The knit-airflow wheel: what it ships, what it asks for, and that Airflow finds the provider and its plugin.

The wheels are built from a copy of the sources, so no stale ``build/`` directory can leak into them,
and knit-airflow is installed, with its dependencies, into a venv that holds only the image's pins
(requirements.txt), as a data team adds it to the Airflow it runs.

That venv is kept in ``.cache/packaging-venv`` until requirements.txt changes: creating it installs
Airflow (about a minute from pip's cache on a busy machine; the whole module then takes 65-85 s,
about 20 s with the venv kept), while every run still uninstalls knit-airflow first and installs the new
wheel through pip's resolver, so the ranges are checked against the pins each time. A lock keeps two
test sessions of one checkout from installing into it at once.
"""

from __future__ import annotations

import configparser
import email.parser
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_SOURCES = ROOT / "plugins" / "knit_provider"
DEVTOOLS_PACKAGES = ("knit_simulator", "knit_devtools")
PIP_TIMEOUT_S = 900


def _run(cmd: list[str | Path], *, env: dict[str, str] | None = None, timeout: float = PIP_TIMEOUT_S) -> str:
    done = subprocess.run([str(part) for part in cmd], env=env, capture_output=True, text=True, timeout=timeout)
    command = " ".join(map(str, cmd))
    assert done.returncode == 0, f"{command} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build both distributions from a clean copy of what their pyproject files name."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(ROOT / "plugins", src / "plugins", ignore=skip)
    shutil.copytree(ROOT / "include", src / "include", ignore=skip)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, src, src / "include"])
    (provider,) = out.glob("knit_airflow-*.whl")
    (devtools,) = out.glob("knit_airflow_devtools-*.whl")
    return {"provider": provider, "devtools": devtools}


def _metadata(wheel: Path) -> tuple[list[str], email.message.Message, configparser.ConfigParser]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (dist_info,) = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
        metadata = email.parser.Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        entry_points = configparser.ConfigParser()
        if f"{dist_info}/entry_points.txt" in names:
            entry_points.read_string(archive.read(f"{dist_info}/entry_points.txt").decode())
    return names, metadata, entry_points


def test_the_provider_wheel_holds_knit_provider_whole_and_nothing_else(wheels: dict[str, Path]) -> None:
    names, _, _ = _metadata(wheels["provider"])
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"knit_provider"}
    sources = {
        path.relative_to(PROVIDER_SOURCES.parent).as_posix()
        for pattern in ("*.py", "*.sql")
        for path in PROVIDER_SOURCES.rglob(pattern)
        if "__pycache__" not in path.parts
    }
    missing = sorted(sources - set(names))
    assert not missing, f"not in the wheel (a package missing from [tool.setuptools] packages?): {missing}"
    assert "knit_provider/sql/landing/0001_init.sql" in names


def test_the_provider_wheel_registers_the_provider_and_the_plugin(wheels: dict[str, Path]) -> None:
    _, _, entry_points = _metadata(wheels["provider"])
    assert dict(entry_points["apache_airflow_provider"]) == {
        "provider_info": "knit_provider.provider_info:get_provider_info"
    }
    assert dict(entry_points["airflow.plugins"]) == {"knit": "knit_provider.plugin:KnitPlugin"}


def test_the_provider_asks_for_ranges_not_pins(wheels: dict[str, Path]) -> None:
    _, metadata, _ = _metadata(wheels["provider"])
    requires = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    pinned = [str(req) for req in requires if any(spec.operator in ("==", "===") for spec in req.specifier)]
    assert not pinned, f"exact pins belong in requirements.txt (the image), not in the provider: {pinned}"
    airflow = next(req for req in requires if req.name == "apache-airflow")
    assert airflow.specifier.contains("3.1.1")
    assert not airflow.specifier.contains("3.1.0"), "3.1.0 cannot read connections outside a task (README)"


def test_the_devtools_wheel_holds_the_simulator_and_the_tools_and_needs_the_provider(
    wheels: dict[str, Path],
) -> None:
    names, metadata, _ = _metadata(wheels["devtools"])
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == set(
        DEVTOOLS_PACKAGES
    )
    requires = {Requirement(line).name for line in metadata.get_all("Requires-Dist") or []}
    assert "knit-airflow" in requires


def test_make_test_compat_installs_the_floors_the_provider_declares(wheels: dict[str, Path]) -> None:
    """`make test-compat` must test the oldest versions we claim: each Airflow floor, pinned."""
    _, metadata, _ = _metadata(wheels["provider"])
    floors = {}
    for line in metadata.get_all("Requires-Dist") or []:
        req = Requirement(line)
        lowest = [spec.version for spec in req.specifier if spec.operator == ">="]
        if req.name.startswith("apache-airflow"):
            assert lowest, f"{line}: an Airflow dependency needs a floor that make test-compat can pin"
            floors[req.name] = lowest[0]
    pins = {}
    for line in (ROOT / "constraints-compat.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            if spec.operator == "==":
                pins[req.name] = spec.version
    assert {name: pins.get(name) for name in floors} == floors


@pytest.fixture(scope="module")
def airflow_venv() -> Iterator[Path]:
    """A venv with requirements.txt only (see the module docstring), locked for this session."""
    requirements = ROOT / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    home = ROOT / ".cache" / "packaging-venv"
    stamp = home / ".requirements-sha256"
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / "packaging-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = home / "bin" / "python"
        if not stamp.exists() or stamp.read_text() != digest:
            shutil.rmtree(home, ignore_errors=True)
            venv.create(home, with_pip=True)
            _run([python, "-m", "pip", "install", "-q", "-r", requirements])
            stamp.write_text(digest)
        _run([python, "-m", "pip", "uninstall", "-q", "-y", "knit-airflow"])
        yield home


def _airflow(home: Path, airflow_home: Path, *args: str) -> str:
    """Run the venv's ``airflow`` with a fresh home whose plugins folder is empty: only entry points count."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AIRFLOW", "PYTHON"))}
    (airflow_home / "plugins").mkdir(parents=True, exist_ok=True)
    (airflow_home / "dags").mkdir(exist_ok=True)
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(airflow_home / "plugins"),
        AIRFLOW__CORE__DAGS_FOLDER=str(airflow_home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    return _run([home / "bin" / "airflow", *args], env=env, timeout=300)


def test_airflow_with_the_image_pins_lists_the_installed_provider_and_its_plugin(
    wheels: dict[str, Path], airflow_venv: Path, tmp_path: Path
) -> None:
    # With its dependencies: pip must find the ranges satisfied by the pins already there.
    pip = [airflow_venv / "bin" / "python", "-m", "pip", "install", "-q"]
    _run([*pip, "-r", ROOT / "requirements.txt", wheels["provider"]])
    providers = json.loads(_airflow(airflow_venv, tmp_path, "providers", "list", "--output", "json"))
    assert [p["version"] for p in providers if p["package_name"] == "knit-airflow"] == ["0.1.0"]
    plugins = json.loads(_airflow(airflow_venv, tmp_path, "plugins", "--output", "json"))
    (knit,) = [plugin for plugin in plugins if plugin["name"] == "knit"]
    assert "EntryPoint(name='knit'" in knit["source"]
    assert [app["url_prefix"] for app in knit["fastapi_apps"]] == ["/knit", "/knit-syncs"]
    assert [view["href"] for view in knit["external_views"]] == ["/knit-syncs/"]
