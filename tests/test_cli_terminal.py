"""``python -m knit_provider`` never writes a control character from the store to the terminal.

Ids, reasons, headers and bodies holding terminal escapes, C1 codes and bidi overrides are written
through the landing store's own write path; every command that shows them prints their escapes
instead (``knit_provider.terminal``), on stdout, stderr and in its log lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import airflow  # noqa: F401  # sets up its logging on import: now, not inside a test (where it would drop caplog's handler)
import asyncpg
import orjson
import psycopg2
import pytest

from knit_provider.__main__ import main
from knit_provider.landing.store import LandingStore
from knit_provider.settings import ATS_APPLICATIONS, Schemas

# Retitle the terminal, clear it, return to the line's start, CSI as one C1 code, right-to-left override.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\r\x9b31m\u202e"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\r\\x9b31m\\u202e"
RUN = f"sr-terminal{HOSTILE}"
INTEGRATION = f"int-terminal{HOSTILE}"
# What a terminal acts on: C0 but the line break, DEL, C1, bidi controls, line and paragraph separators.
UNSAFE = {*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), "\u061c", "\u200e", "\u200f", "\u2028", "\u2029"}
UNSAFE |= {*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
UNSAFE.discard("\n")


@dataclass
class Event:
    event_id: str | None
    event_type: str | None
    payload: str
    sync_run_id: str | None = None
    record_id: str | None = None
    sync_type: str | None = "delta_sync"
    sync_data_type: str | None = ATS_APPLICATIONS
    sync_job_id: str | None = "sj-terminal"
    integration_id: str | None = INTEGRATION
    execution_id: str | None = None


@dataclass
class Letter:
    reason: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    integration_id: str | None = INTEGRATION
    event_id: str | None = None
    event_type: str | None = "record.new"
    sync_job_id: str | None = "sj-terminal"
    sync_run_id: str | None = RUN


def _event(event_id: str, event_type: str, data: dict[str, Any], **columns: Any) -> Event:
    envelope = {
        "eventId": event_id,
        "eventType": event_type,
        "eventData": data,
        "syncRunId": columns.get("sync_run_id"),
    }
    envelope.update(syncDataType=ATS_APPLICATIONS, syncJobId="sj-terminal", recordId=columns.get("record_id"))
    return Event(event_id, event_type, json.dumps(envelope), **columns)


def _write(url: str, events: list[Event], letters: list[Letter]) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await LandingStore(Schemas()).land(conn, events, letters)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def hostile_store(landing_url: str) -> str:
    """A run of two records whose third is a dead letter, and an activation, all with hostile text."""
    counts = {"status": "completed", "processed": 3, "emitted": 3, "consumed": 3, "complete": True}
    events = [
        _event(
            f"ev-terminal-{i}{HOSTILE}", "record.new", {"info": {"id": f"app-{i}"}}, sync_run_id=RUN, record_id=f"r{i}"
        )
        for i in range(2)
    ]
    events.append(_event("ev-terminal-done", "sync.events.allConsumed", counts, sync_run_id=RUN))
    activation = {"integrationId": INTEGRATION, "activatedAt": "1700000000000", "errors": [{"msg": HOSTILE}]}
    events.append(_event("act-terminal", "app.integration.activate", activation, sync_data_type=None, sync_job_id=None))
    body = orjson.dumps({"eventType": "record.new", "syncRunId": RUN, "eventData": {"name": HOSTILE}})
    letter = Letter(
        reason=f"the database refused the event: {HOSTILE}",
        body=body,
        headers={"x-knit-execution-id": f"exec{HOSTILE}"},
        event_id=f"ev-terminal-letter{HOSTILE}",
    )
    _write(landing_url, events, [letter])
    return landing_url


def _cli(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["--database-url", url, *args])
    out, err = capsys.readouterr()
    return status, out, err


def _assert_visible(*texts: str) -> None:
    for text in texts:
        assert not UNSAFE & set(text), f"raw control characters reached the terminal: {text!r}"
    assert any(SHOWN in text for text in texts), texts


def _letter_id(capsys: pytest.CaptureFixture[str], url: str) -> str:
    status, out, _ = _cli(url, capsys, "dead-letters", "list", "--run-id", RUN)
    assert status == 0
    return out.splitlines()[-1].split()[0]


def test_dead_letters_list_and_show_print_escapes(hostile_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _cli(hostile_store, capsys, "dead-letters", "list", "--run-id", RUN)
    assert status == 0
    _assert_visible(out, err)
    header, row = out.splitlines()[-2:]  # after Airflow's own first log line, when it is the first command
    assert f"int-terminal{SHOWN}" in row
    assert row.index("the database refused") == header.index("REASON"), "the columns still line up"

    status, out, err = _cli(hostile_store, capsys, "dead-letters", "show", _letter_id(capsys, hostile_store))
    assert status == 0
    _assert_visible(out, err)
    assert f"reason:       the database refused the event: {SHOWN}" in out
    assert f"x-knit-execution-id: exec{SHOWN}" in out
    assert f"event:        ev-terminal-letter{SHOWN} (record.new)" in out
    # The body's JSON escapes C0 itself; what JSON leaves raw (C1, bidi) is escaped on printing.
    assert '"name": "\\u001b]0;pwned\\u0007\\u001b[2J\\r\\x9b31m\\u202e"' in out


def test_integrations_list_prints_escapes_and_its_json_stays_exact(
    hostile_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _cli(hostile_store, capsys, "integrations", "list")
    assert status == 0
    _assert_visible(out, err)
    assert f"int-terminal{SHOWN}" in out

    status, out, err = _cli(hostile_store, capsys, "integrations", "list", "--json")
    assert status == 0
    assert not UNSAFE & set(out + err), out
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert listed["integration_id"] == INTEGRATION, "the JSON escapes decode to the stored id"
    assert listed["validation_errors"] == [{"msg": HOSTILE}]


def test_normalize_prints_and_logs_escapes(
    hostile_store: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status, out, err = _cli(hostile_store, capsys, "normalize", "--run-id", RUN)
    assert status == 1, "one of three records is a dead letter"
    _assert_visible(out, err)
    assert f"run {'sr-terminal' + SHOWN}: 2 record events" in out
    assert f"event ev-terminal-letter{SHOWN} (1 attempt): the database refused the event: {SHOWN}" in out
    logged = "\n".join(record.getMessage() for record in caplog.records)
    _assert_visible(logged)
    assert f"Normalized run sr-terminal{SHOWN}" in logged


def test_a_real_process_writes_no_control_character(hostile_store: str) -> None:
    """The module entry point, where Airflow's logging (set up on import) writes the log lines."""
    done = subprocess.run(
        [sys.executable, "-m", "knit_provider", "--database-url", hostile_store, "normalize", "--run-id", RUN],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    out, err = done.stdout.decode(), done.stderr.decode()
    _assert_visible(out, err)
    assert f"Normalized run sr-terminal{SHOWN}" in out + err


def test_an_unexpected_error_is_logged_escaped_with_exit_1(
    hostile_store: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A database error quoting a stored value: its traceback goes through the log, made visible."""
    refuse = (
        "CREATE FUNCTION knit_landing.refuse_for_test() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN RAISE EXCEPTION 'refused %', NEW.integration_id; END$$; "
        "CREATE TRIGGER refuse_for_test BEFORE UPDATE ON knit_landing.integrations "
        "FOR EACH ROW EXECUTE FUNCTION knit_landing.refuse_for_test()"
    )
    with psycopg2.connect(hostile_store) as conn, conn.cursor() as cur:
        cur.execute(refuse)
    conn.close()
    try:
        status, out, err = _cli(hostile_store, capsys, "integrations", "disable", INTEGRATION)
    finally:
        with psycopg2.connect(hostile_store) as conn, conn.cursor() as cur:
            cur.execute("DROP FUNCTION knit_landing.refuse_for_test() CASCADE")
        conn.close()
    assert status == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    _assert_visible(out, err, logged)
    assert "integrations failed" in logged
    assert f"refused int-terminal{SHOWN}" in logged
    assert "Traceback" in logged
