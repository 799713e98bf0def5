"""Every ``python -m knit_provider`` command says in one line why it could not reach the landing database."""

from __future__ import annotations

import socket

import pytest

from knit_provider.__main__ import main

COMMANDS = [
    ["migrate"],
    ["prune", "--older-than", "30d", "--dry-run"],
    ["normalize", "--pending"],
    ["dead-letters", "list"],
    ["integrations", "list"],
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unreachable_database_is_one_line_and_exit_2(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://knit@127.0.0.1:{_closed_port()}/knit?connect_timeout=2"
    assert main(["--database-url", url, *command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the landing database:"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_undefined_connection_says_how_to_define_it(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--conn-id", "knit_landing_nowhere", *command]) == 2
    err = capsys.readouterr().err
    assert "the Airflow connection 'knit_landing_nowhere' is not defined" in err, err
    assert "AIRFLOW_CONN_KNIT_LANDING_NOWHERE=" in err
