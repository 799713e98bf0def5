"""Run the simulator as a subprocess from a test, a benchmark or the demo, and talk to it.

    with run_simulator(applications=50, seed=7, args=["--destination", url]) as sim:
        job_id = sim.start_sync("int-1")["data"]["syncJobId"]
        run = sim.wait_job(job_id)["runs"][-1]
        truth = sim.truth("int-1")

Readiness is the "listening on" line the simulator prints, then a GET that answers; both are
awaited with a deadline. Only the standard library is used, so any test can import this.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from knit_simulator.config import API_KEY_ENV
from knit_simulator.server import READY_PREFIX
from knit_simulator.sources import ATS_APPLICATIONS, SIMULATED_MODELS

DEFAULT_API_KEY = "sim-test-api-key"
LONG_POLL_SECONDS = 20.0


class SimulatorError(RuntimeError):
    """The simulator did not start, or answered a control call with an error."""


class SimulatorProcess:
    """A running simulator: where it listens, its API key, and helpers for its API."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str, api_key: str, log_path: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.api_key = api_key
        self.log_path = log_path

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.base_url).port or 0)

    def log_text(self) -> str:
        """What the simulator logged so far (its stderr)."""
        return self.log_path.read_text(errors="replace")

    # ---- Knit's API --------------------------------------------------------------------------
    def api(
        self, operation: str, body: dict[str, Any], integration_id: str, api_key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST ``/v1.0/<operation>`` as a Knit client would; returns (status, JSON answer)."""
        headers = {
            "Authorization": f"Bearer {api_key or self.api_key}",
            "X-Knit-Integration-Id": integration_id,
            "Content-Type": "application/json",
        }
        return self._request("POST", f"/v1.0/{operation}", json.dumps(body).encode(), headers)

    def start_sync(
        self,
        integration_id: str,
        destination: str | None = None,
        models: Sequence[str] | None = None,
        sync_type: str | None = None,
        data_type: str = ATS_APPLICATIONS,
        **fields: Any,
    ) -> dict[str, Any]:
        """``sync.start`` of ``data_type`` (every model unless ``models``); raises unless Knit's envelope says success.

        ``destination`` (the applications page's shape) overrides the category webhook
        (``--destination``) for the job; None sends the documented body, without it.
        """
        body: dict[str, Any] = {
            "dataType": data_type,
            "models": list(models if models is not None else SIMULATED_MODELS[data_type]),
            **fields,
        }
        if destination is not None:
            body["destination"] = destination
        if sync_type is not None:
            body["syncType"] = sync_type
        status, answer = self.api("sync.start", body, integration_id)
        if status != 200 or not answer.get("success"):
            raise SimulatorError(f"sync.start answered {status}: {answer}")
        return answer

    # ---- the simulator's own API -------------------------------------------------------------
    def trigger_run(
        self,
        job_id: str,
        sync_type: str = "delta_sync",
        delta_share: float | None = None,
        skip_empty_all_consumed: bool | None = None,
    ) -> dict[str, Any]:
        """Start a run of a job as Knit's scheduler would; returns its ids.

        ``delta_share=0`` makes a run with no change; ``skip_empty_all_consumed`` overrides the
        ``--skip-empty-all-consumed`` flag for this run.
        """
        body: dict[str, Any] = {"syncType": sync_type}
        if delta_share is not None:
            body["deltaShare"] = delta_share
        if skip_empty_all_consumed is not None:
            body["skipEmptyAllConsumed"] = skip_empty_all_consumed
        return self._ok("POST", f"/_sim/jobs/{job_id}/run", json.dumps(body).encode())

    def activate(
        self,
        integration_id: str,
        errors: Sequence[Any] | None = None,
        destination: str | None = None,
        activated_at: int | None = None,
        auto_initial_sync: bool | None = None,
    ) -> dict[str, Any]:
        """Connect the integration and send ``app.integration.activate`` (with validation ``errors`` if given,
        dated ``activated_at`` epoch ms if given); returns the notice. ``auto_initial_sync`` picks, for this
        activation, whether Knit starts the initial sync by itself (default: the command line's reading)."""
        body: dict[str, Any] = {}
        if errors is not None:
            body["errors"] = list(errors)
        if destination is not None:
            body["destination"] = destination
        if activated_at is not None:
            body["activatedAt"] = activated_at
        if auto_initial_sync is not None:
            body["autoInitialSync"] = auto_initial_sync
        return self._ok(
            "POST",
            f"/_sim/integrations/{urllib.parse.quote(integration_id, safe='')}/activate",
            json.dumps(body).encode(),
        )

    def notices(self, integration_id: str | None = None) -> list[dict[str, Any]]:
        """Events sent outside any run (``app.integration.activate``) and how their delivery went."""
        query = urllib.parse.urlencode({"integration_id": integration_id} if integration_id else {})
        return list(self._ok("GET", f"/_sim/notices?{query}")["notices"])

    def wait_notice(self, event_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Long-poll until the notice was answered 200 (``delivered``) or given up; raise after ``timeout``."""
        return self._wait(f"/_sim/notices/{event_id}", lambda n: bool(n["complete"]), timeout, f"notice {event_id}")

    def starts(self, integration_id: str | None = None) -> list[dict[str, Any]]:
        """Every ``sync.start`` call the simulator received, refused and unanswered ones included."""
        query = urllib.parse.urlencode({"integration_id": integration_id} if integration_id else {})
        return list(self._ok("GET", f"/_sim/starts?{query}")["starts"])

    def job(self, job_id: str) -> dict[str, Any]:
        """The job now: settings, frequency, ``nextDeltaAt`` and its runs."""
        return self._ok("GET", f"/_sim/jobs/{job_id}")

    def run(self, run_id: str) -> dict[str, Any]:
        return self._ok("GET", f"/_sim/runs/{run_id}")

    def runs(self, job_id: str | None = None, integration_id: str | None = None) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({k: v for k, v in (("job_id", job_id), ("integration_id", integration_id)) if v})
        return list(self._ok("GET", f"/_sim/runs?{query}")["runs"])

    def wait_run(self, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Long-poll until the run finished (state completed, gave_up or failed); raise after ``timeout``."""
        return self._wait(f"/_sim/runs/{run_id}", lambda r: bool(r["complete"]), timeout, f"run {run_id}")

    def wait_job(self, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Long-poll until no run of the job is queued or running; returns the job with its runs."""
        return self._wait(f"/_sim/jobs/{job_id}", lambda j: not j["busy"], timeout, f"job {job_id}")

    def truth(
        self, integration_id: str, models: Sequence[str] | None = None, data_type: str = ATS_APPLICATIONS
    ) -> dict[str, Any]:
        """What a receiver of every event of ``data_type`` holds: ``applications`` (or ``jobs``) {id:
        eventData} and ``deleted`` {id: eventData of its record.deleted}."""
        query = {"integration_id": integration_id, "data_type": data_type}
        if models is not None:
            query["models"] = ",".join(models)
        return self._ok("GET", "/_sim/truth?" + urllib.parse.urlencode(query))

    def _wait(self, path: str, done: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            answer = self._ok(
                "GET", f"{path}?wait={max(0.0, min(LONG_POLL_SECONDS, left)):.3f}", timeout=LONG_POLL_SECONDS + 10
            )
            if done(answer):
                return answer
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what} not finished after {timeout:.0f}s: {answer}")

    def _ok(self, method: str, path: str, body: bytes | None = None, timeout: float = 30.0) -> dict[str, Any]:
        status, answer = self._request(method, path, body, {"Content-Type": "application/json"}, timeout)
        if status != 200:
            raise SimulatorError(f"{method} {path} answered {status}: {answer}")
        return answer

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float = 30.0
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.base_url + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"text": raw.decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}


@contextlib.contextmanager
def run_simulator(
    *,
    applications: int = 100,
    seed: int = 1,
    api_key: str = DEFAULT_API_KEY,
    port: int = 0,
    args: Sequence[str] = (),
    startup_timeout: float = 30.0,
) -> Iterator[SimulatorProcess]:
    """Start ``python -m knit_simulator`` (extra CLI ``args`` such as ``["--shuffle"]``), stop it after."""
    log_file = tempfile.NamedTemporaryFile(prefix="knit-simulator-", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        sys.executable,
        "-m",
        "knit_simulator",
        "--port",
        str(port),
        "--applications",
        str(applications),
        "--seed",
        str(seed),
        *args,
    ]
    env = {**os.environ, API_KEY_ENV: api_key}  # not on the command line, where `ps` would show it
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_file, env=env)
    log_path = Path(log_file.name)
    log_file.close()
    try:
        base_url = _await_ready(process, startup_timeout, log_path)
        yield SimulatorProcess(process, base_url, api_key, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _await_ready(process: subprocess.Popen[bytes], timeout: float, log_path: Path) -> str:
    """The base URL from the "listening on" line, once a GET on it answers."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                raise SimulatorError(
                    f"simulator did not start (exit code {process.poll()}): "
                    f"{log_path.read_text(errors='replace')[-2000:]}"
                )
            if selector.select(timeout=min(left, 0.5)):
                chunk = os.read(process.stdout.fileno(), 1)
                if not chunk:
                    continue
                line += chunk
    text = line.decode().strip()
    if not text.startswith(READY_PREFIX):
        raise SimulatorError(f"unexpected first line from the simulator: {text!r}")
    base_url = text.removeprefix(READY_PREFIX)
    while True:
        try:
            with urllib.request.urlopen(base_url + "/", timeout=2) as response:
                if response.status == 200:
                    return base_url
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SimulatorError(f"simulator at {base_url} does not answer: {exc}") from exc
            time.sleep(0.05)  # polling with a deadline: the server is up but not yet accepting
