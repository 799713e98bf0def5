"""Unsigned mode is never the result of a leftover setting: refused beside a key, and off loopback.

A key from any source (``--secret``, ``KNIT_WEBHOOK_SECRET``, the ``knit_default`` connection) next
to ``--unsigned``/``KNIT_WEBHOOK_UNSIGNED`` refuses to start, saying what to remove. Unsigned mode
runs only on a loopback address unless ``--unsigned-on-any-address`` (or
``KNIT_WEBHOOK_UNSIGNED_ANY_ADDRESS``) says so too; mounted in Airflow's API server, whose address
is not the receiver's to know, it always needs that flag.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest
from receiver_helpers import ROOT

from knit_provider.webhook.__main__ import _settings, build_parser
from knit_provider.webhook.app import create_app
from knit_provider.webhook.settings import ReceiverSettings, SettingsError, resolve_mounted_settings

DATABASE = ["--database-url", "postgresql://nobody@127.0.0.1:1/none"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "KNIT_WEBHOOK_SECRET",
        "KNIT_WEBHOOK_UNSIGNED",
        "KNIT_WEBHOOK_UNSIGNED_ANY_ADDRESS",
        "KNIT_WEBHOOK_DATABASE_URL",
        "AIRFLOW_CONN_KNIT_DEFAULT",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _resolve(*args: str) -> ReceiverSettings:
    return _settings(build_parser().parse_args([*DATABASE, *args]))


@pytest.mark.parametrize("unsigned_by", ["flag", "environment"])
@pytest.mark.parametrize(
    ("key_from", "named"),
    [("flag", "--secret"), ("environment", "KNIT_WEBHOOK_SECRET"), ("connection", "the connection 'knit_default'")],
)
def test_unsigned_mode_beside_a_key_refuses_to_start(
    env: pytest.MonkeyPatch, unsigned_by: str, key_from: str, named: str
) -> None:
    args = ["--unsigned"] if unsigned_by == "flag" else []
    if unsigned_by == "environment":
        env.setenv("KNIT_WEBHOOK_UNSIGNED", "yes")
    if key_from == "flag":
        args += ["--secret", "k"]
    elif key_from == "environment":
        env.setenv("KNIT_WEBHOOK_SECRET", "k")
    else:
        env.setenv("AIRFLOW_CONN_KNIT_DEFAULT", json.dumps({"conn_type": "knit", "password": "api-key"}))
    with pytest.raises(SettingsError) as refused:
        _resolve(*args)
    message = str(refused.value)
    assert f"a signing key ({named}) are both configured" in message
    assert "remove KNIT_WEBHOOK_UNSIGNED (or --unsigned)" in message
    with pytest.raises(SettingsError, match="both given"):  # built directly, the same
        ReceiverSettings(database_url="postgresql://x/y", secret=b"k", unsigned=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost"])
def test_unsigned_mode_runs_on_loopback(env: pytest.MonkeyPatch, host: str) -> None:
    settings = _resolve("--unsigned", "--host", host)
    assert (settings.unsigned, settings.secret) == (True, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "receiver.example.com"])
def test_unsigned_mode_off_loopback_needs_the_second_flag(env: pytest.MonkeyPatch, host: str) -> None:
    with pytest.raises(SettingsError, match="runs only on a loopback address") as refused:
        _resolve("--unsigned", "--host", host)
    assert f"would listen on {host!r}" in str(refused.value)
    assert "KNIT_WEBHOOK_UNSIGNED_ANY_ADDRESS=true (--unsigned-on-any-address)" in str(refused.value)
    assert _resolve("--unsigned", "--host", host, "--unsigned-on-any-address").unsigned
    env.setenv("KNIT_WEBHOOK_UNSIGNED_ANY_ADDRESS", "true")
    assert _resolve("--unsigned", "--host", host).unsigned
    # A signed receiver listens anywhere, and the second flag alone changes nothing.
    assert _resolve("--secret", "k", "--host", host).secret == b"k"


def test_the_command_exits_2_saying_what_to_remove(env: pytest.MonkeyPatch) -> None:
    """The real command (a process: before the fix it would serve, unsigned, on every interface)."""
    env.setenv("KNIT_WEBHOOK_UNSIGNED", "yes")
    command = [sys.executable, "-m", "knit_provider.webhook", *DATABASE, "--host", "0.0.0.0", "--port", "0"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "error: Unsigned mode accepts a body from anyone who can connect" in done.stderr


def test_mounted_unsigned_mode_needs_the_second_flag(env: pytest.MonkeyPatch) -> None:
    """The plugin's loader: Airflow chooses the API server's address, so loopback cannot be known."""
    env.setenv("KNIT_WEBHOOK_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    env.setenv("KNIT_WEBHOOK_UNSIGNED", "true")
    with pytest.raises(SettingsError, match="would listen in Airflow's API server"):
        resolve_mounted_settings()

    async def post() -> tuple[int, str]:
        app = create_app(resolve_mounted_settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://airflow") as client:
            response = await client.post("/webhook", content=b"{}")
        await app.state.receiver.close()
        return response.status_code, response.json()["error"]

    assert asyncio.run(post()) == (503, "the webhook receiver is not configured (see the API server log); retry later")
    env.setenv("KNIT_WEBHOOK_UNSIGNED_ANY_ADDRESS", "1")
    settings = resolve_mounted_settings()
    assert (settings.unsigned, settings.unsigned_any_address, settings.secret) == (True, True, None)
