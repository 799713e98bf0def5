"""The nginx example (docker/nginx-knit-webhook.conf): the limits docs/receiver.md asks of the proxy, and valid."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from receiver_helpers import ROOT

from knit_provider.webhook.settings import ReceiverSettings

CONFIG = ROOT / "docker" / "nginx-knit-webhook.conf"
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "s": 1}


def _directives() -> dict[str, list[str]]:
    text = re.sub(r"#.*", "", CONFIG.read_text())
    return {match[1]: match[2].split() for match in re.finditer(r"^\s*(\w+)\s+([^;{]*);", text, re.MULTILINE)}


def _size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kms]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit]


def test_limits_are_set_and_within_the_receivers() -> None:
    directives = _directives()
    count, size = directives["large_client_header_buffers"]
    assert _size(size) <= ReceiverSettings.max_header_bytes  # request line and each header
    assert _size(directives["client_header_buffer_size"][0]) + int(count) * _size(size) <= (
        ReceiverSettings.max_head_bytes
    )
    assert _size(directives["client_header_timeout"][0]) <= ReceiverSettings.head_timeout_seconds
    assert _size(directives["client_body_timeout"][0]) <= ReceiverSettings.body_timeout_seconds
    assert _size(directives["client_max_body_size"][0]) <= ReceiverSettings.max_body_bytes
    assert _size(directives["keepalive_timeout"][0]) <= ReceiverSettings.idle_timeout_seconds
    assert directives["limit_conn"][0] == directives["limit_conn_zone"][1].split("=")[1].split(":")[0]
    # Requests per client address are rate-limited as well (README: what the proxy must cap).
    assert directives["limit_req"][0] == "zone=" + directives["limit_req_zone"][1].split("=")[1].split(":")[0]
    assert directives["limit_req_status"] == directives["limit_conn_status"] == ["503"]
    assert "location = /knit/webhook" in CONFIG.read_text()


@pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("openssl") is None,
    reason="nginx or openssl is not installed (apt-get install nginx-light openssl)",
)
def test_nginx_accepts_the_example(tmp_path: Path) -> None:
    certificate, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    config = tmp_path / "nginx.conf"
    config.write_text(
        CONFIG.read_text()
        .replace("/etc/nginx/tls/webhooks.example.com.crt", str(certificate))
        .replace("/etc/nginx/tls/webhooks.example.com.key", str(key))
    )
    checked = subprocess.run(
        [
            "nginx",
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(config),
            "-g",
            f"pid {tmp_path / 'nginx.pid'}; error_log stderr;",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
