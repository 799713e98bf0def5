"""Dead letters end to end: the standalone receiver over real HTTP keeps authentic unusable bodies,
reconciliation names them, and ``python -m knit_provider dead-letters list|show|replay`` inspects and
replays them through the receiver's write path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg2
import pytest
from receiver_helpers import InProcess, event, new_id, scalar, settings_for, signed

from knit_provider.__main__ import main

REFUSE = "refuse_for_test"


@pytest.fixture(scope="module")
def raw(landing_url: str) -> Iterator[InProcess]:
    harness = InProcess(settings_for(landing_url), "raw")
    yield harness
    harness.close()


def _sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)


def cli(url: str, *args: str) -> int:
    return main(["--database-url", url, *args])


def _letter_ids(url: str, run_id: str) -> list[int]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM knit_landing.dead_letters WHERE sync_run_id = %s ORDER BY id", (run_id,))
        return [row[0] for row in cur.fetchall()]


def _run_event(run_id: str, event_type: str, count: int) -> dict[str, Any]:
    data = {
        "status": "completed",
        "processed": count,
        "emitted": count,
        "consumed": count,
        "complete": True,
        "startedAt": "1700000000000",
        "processedAt": "1700000001000",
        "completedAt": "1700000002000",
    }
    return event(eventType=event_type, syncRunId=run_id, recordId=None, eventData=data)


def test_dead_letters_are_named_by_reconciliation_inspected_and_replayed(
    raw: InProcess, landing_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = new_id("sr")
    good = [event(syncRunId=run_id, recordId=f"app-{i}", eventData={"info": {"id": f"app-{i}"}}) for i in range(2)]
    for document in good:
        assert raw.post_event(document).status_code == 200
    # The database refuses one event for a while (a constraint stands in for any transient refusal).
    refused = event(syncRunId=run_id, recordId="app-refused", eventData={"info": {"id": "app-refused"}})
    _sql(
        landing_url,
        f"ALTER TABLE knit_landing.events ADD CONSTRAINT {REFUSE} CHECK (event_id <> %s) NOT VALID",
        (refused["eventId"],),
    )
    answer = raw.post_event(refused, **{"X-Knit-Execution-Id": "exec-refused"})
    assert (answer.status_code, answer.json()["status"]) == (200, "dead_letter")
    # And one body is authentic but no event at all, sent twice (Knit would retry it for days otherwise).
    no_id = event(syncRunId=run_id, recordId="app-no-id")
    del no_id["eventId"]
    for _ in range(2):
        assert raw.post_event(no_id).status_code == 200
    assert raw.post_event(_run_event(run_id, "sync.events.allConsumed", 4)).status_code == 200
    refused_id, no_id_id = _letter_ids(landing_url, run_id)

    # Reconciliation: 2 of 4 missing, and the failure says where they are and what to do.
    assert cli(landing_url, "normalize", "--run-id", run_id) == 1
    out = capsys.readouterr().out
    assert "2 MISSING" in out
    assert f"#{refused_id} event {refused['eventId']} (1 attempt): the database refused the event" in out
    assert f"#{no_id_id} (2 attempts): eventId is missing or empty" in out
    assert "python -m knit_provider dead-letters show ID" in out
    assert f"dead-letters replay --all-for-run {run_id}" in out

    assert cli(landing_url, "dead-letters", "list", "--run-id", run_id) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:4] == ["ID", "FIRST", "SEEN", "LAST"]
    assert [line.split()[0] for line in listing[1:]] == [str(refused_id), str(no_id_id)]
    assert listing[2].split()[3] == "2"  # attempts
    assert run_id in listing[1]
    assert "int-test" in listing[1]

    assert cli(landing_url, "dead-letters", "show", str(refused_id)) == 0
    shown = capsys.readouterr().out
    assert "reason:       the database refused the event" in shown
    assert "x-knit-execution-id: exec-refused" in shown
    assert "x-knit-signature: " in shown
    assert f'"eventId": "{refused["eventId"]}"' in shown  # pretty-printed JSON

    # While the cause is still there, a replay changes nothing and says why, for each.
    assert cli(landing_url, "dead-letters", "replay", "--all-for-run", run_id) == 1
    out = capsys.readouterr().out
    assert f"dead letter #{refused_id}: not replayed: the database still refuses the event" in out
    assert f"dead letter #{no_id_id}: not replayed: still not a usable event: eventId is missing" in out

    _sql(landing_url, f"ALTER TABLE knit_landing.events DROP CONSTRAINT {REFUSE}")
    assert cli(landing_url, "dead-letters", "replay", str(refused_id), "--dry-run") == 0
    assert f"dry run: dead letter #{refused_id}: would land as event {refused['eventId']} of run {run_id} (new)" in (
        capsys.readouterr().out
    )
    assert (
        scalar(landing_url, "SELECT count(*) FROM knit_landing.events WHERE event_id = %s", (refused["eventId"],)) == 0
    )
    assert scalar(landing_url, "SELECT replayed_at FROM knit_landing.dead_letters WHERE id = %s", (refused_id,)) is None

    assert cli(landing_url, "dead-letters", "replay", "--all-for-run", run_id) == 1  # the no-id body still fails
    out = capsys.readouterr().out
    assert f"dead letter #{refused_id}: landed as event {refused['eventId']} of run {run_id} (new)" in out
    assert f"python -m knit_provider normalize --run-id {run_id}" in out
    with psycopg2.connect(landing_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT execution_id, integration_id FROM knit_landing.events WHERE event_id = %s", (refused["eventId"],)
        )
        assert cur.fetchone() == ("exec-refused", "int-test")  # the receiver's columns, from the kept headers
        cur.execute("SELECT record_events FROM knit_landing.sync_runs WHERE sync_run_id = %s", (run_id,))
        assert cur.fetchone() == (3,)
        cur.execute(
            "SELECT id FROM knit_landing.dead_letters WHERE sync_run_id = %s AND replayed_at IS NOT NULL", (run_id,)
        )
        assert cur.fetchall() == [(refused_id,)]

    # Replaying again is harmless (the event id is unique); listings leave replayed ones out unless asked.
    assert cli(landing_url, "dead-letters", "replay", str(refused_id)) == 0
    assert "(it had already landed)" in capsys.readouterr().out
    assert cli(landing_url, "dead-letters", "list", "--run-id", run_id) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [str(no_id_id)]
    assert cli(landing_url, "dead-letters", "list", "--run-id", run_id, "--include-replayed") == 0
    assert len(capsys.readouterr().out.splitlines()) == 3

    assert cli(landing_url, "normalize", "--run-id", run_id) == 1
    out = capsys.readouterr().out
    assert "1 MISSING" in out
    assert f"#{no_id_id} (2 attempts)" in out
    assert f"#{refused_id}" not in out


def test_unknown_ids_and_bad_arguments_are_clear_errors(
    raw: InProcess, landing_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b'{"eventType": "record.new", "syncRunId": "sr-cli-errors", "eventData": {"x": ' + new_id().encode()
    assert raw.post(body, signed(body)).status_code == 200  # truncated: kept, shown as bytes
    (letter_id,) = _letter_ids(landing_url, "sr-cli-errors")
    assert cli(landing_url, "dead-letters", "show", str(letter_id)) == 0
    assert '(not JSON) b\'{"eventType": "record.new"' in capsys.readouterr().out

    assert cli(landing_url, "dead-letters", "show", "987654321") == 2
    assert "No dead letter has id 987654321" in capsys.readouterr().err
    assert cli(landing_url, "dead-letters", "replay", str(letter_id), "987654321") == 2
    assert "No dead letter has id 987654321" in capsys.readouterr().err
    assert scalar(landing_url, "SELECT replayed_at FROM knit_landing.dead_letters WHERE id = %s", (letter_id,)) is None
    assert cli(landing_url, "dead-letters", "replay", "--all-for-run", "sr-nobody") == 2
    assert "No dead letter carries sync run id 'sr-nobody'" in capsys.readouterr().err
    assert cli(landing_url, "dead-letters", "replay") == 2
    assert "ids or --all-for-run" in capsys.readouterr().err
    assert cli(landing_url, "dead-letters", "list", "--since", "2020-01-01") == 2
    assert "has no time zone" in capsys.readouterr().err
    assert cli(landing_url, "dead-letters", "list", "--since", "2100-01-01T00:00:00Z") == 0
    assert capsys.readouterr().out.strip() == "no dead letters waiting for replay"

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "knit_provider",
            "--database-url",
            landing_url,
            "dead-letters",
            "list",
            "--integration-id",
            "int-test",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert any(line.split()[0] == str(letter_id) for line in done.stdout.splitlines()[1:])


def test_body_is_kept_byte_for_byte_whatever_it_is(raw: InProcess, landing_url: str) -> None:
    body = orjson.dumps([{"eventId": new_id()}])
    assert raw.post(body, signed(body)).json()["status"] == "dead_letter"
    assert bytes(scalar(landing_url, "SELECT body FROM knit_landing.dead_letters WHERE body = %s", (body,))) == body
