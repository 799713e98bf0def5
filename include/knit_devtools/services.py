"""Run a long-lived command as a child process and know, by a deadline, whether it is ready.

The demo, the end-to-end tests and the benchmarks all start servers (the simulator, the
receiver, Airflow's components) the same way: log to a file, probe an HTTP URL until it
answers, and on failure say which process died and show the end of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class ServiceError(RuntimeError):
    """A child process failed to start, died, or did not become ready in time."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status a GET of ``url`` answers, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``condition`` until it holds; raise ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Service:
    """One child process: started with its output in a log file, ready when ``ready_url`` answers.

    ``ready_statuses`` are the HTTP answers that count as ready (a server that answers anything
    is up; a health endpoint must say 200).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        ready_url: str | None = None,
        ready_statuses: Sequence[int] = (200,),
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else dict(os.environ)
        self.ready_url = ready_url
        self.ready_statuses = tuple(ready_statuses)
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, ready_timeout: float = 60.0) -> Service:
        """Start the process and wait until it is ready; raise ``ServiceError`` with its log otherwise."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # A new session: stopping the service stops its children too (uvicorn workers, Airflow's
            # supervisors) and a Ctrl-C in the demo's terminal reaches only the demo.
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
            )
        if self.ready_url is not None:
            self.wait_ready(ready_timeout)
        return self

    def _ready(self) -> bool:
        if not self.running:
            raise ServiceError(
                f"{self.name} exited with code {self._returncode()} while starting "
                f"(command: {' '.join(self.argv)}); end of {self.log_path}:\n"
                f"{log_tail(self.log_path)}"
            )
        assert self.ready_url is not None
        return http_status(self.ready_url) in self.ready_statuses

    def wait_ready(self, timeout: float) -> None:
        try:
            wait_until(self._ready, timeout, f"{self.name} at {self.ready_url}")
        except TimeoutError as exc:
            raise ServiceError(f"{exc}; end of {self.log_path}:\n{log_tail(self.log_path)}") from None

    def _returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        """Ask the process group to stop (SIGTERM), then SIGKILL it if it has not within ``timeout``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(10)
        else:
            # The leader is gone; make sure nothing it started outlives it.
            self._signal_group(signal.SIGKILL)
        self.process = None

    def kill(self) -> None:
        """Crash the service: SIGKILL the whole process group, no shutdown code runs."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def restart(self, ready_timeout: float = 60.0) -> Service:
        self.stop()
        return self.start(ready_timeout)
