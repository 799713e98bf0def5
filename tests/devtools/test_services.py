"""Service: start a child process, know by a deadline whether it is ready, stop or crash it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from knit_devtools.embedded_postgres import free_port
from knit_devtools.services import Service, ServiceError, http_status


def _http_server(tmp_path: Path, port: int) -> Service:
    return Service(
        "http",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        log_path=tmp_path / "http.log",
        ready_url=f"http://127.0.0.1:{port}/",
        cwd=tmp_path,
    )


def test_ready_then_killed_then_restarted(tmp_path: Path) -> None:
    port = free_port()
    service = _http_server(tmp_path, port).start(ready_timeout=30)
    try:
        assert service.running
        assert http_status(f"http://127.0.0.1:{port}/") == 200
        service.kill()
        assert not service.running
        assert http_status(f"http://127.0.0.1:{port}/", timeout=0.5) is None
        service.restart(ready_timeout=30)
        assert http_status(f"http://127.0.0.1:{port}/") == 200
    finally:
        service.stop()
    assert not service.running


def test_a_process_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    service = Service(
        "broken",
        [sys.executable, "-c", "import sys; print('bad config: no key'); sys.exit(3)"],
        log_path=tmp_path / "broken.log",
        ready_url=f"http://127.0.0.1:{free_port()}/health",
    )
    with pytest.raises(ServiceError, match="exited with code 3") as raised:
        service.start(ready_timeout=30)
    assert "bad config: no key" in str(raised.value)


def test_not_ready_by_the_deadline_is_an_error(tmp_path: Path) -> None:
    service = Service(
        "silent",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        log_path=tmp_path / "silent.log",
        ready_url=f"http://127.0.0.1:{free_port()}/",
    )
    try:
        with pytest.raises(ServiceError, match="gave up after 1s waiting for silent"):
            service.start(ready_timeout=1)
    finally:
        service.stop()
    assert not service.running
