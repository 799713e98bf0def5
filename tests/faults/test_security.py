"""The claims of docs/security.md (the README's "Security" at a glance), each shown on the real processes.

The stack here lands as a dedicated database role with a password in its URL, logs at DEBUG, and is
fed forged, unsigned and broken bodies, so that a secret reaching a log or a table would be seen.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg2
import pytest
from fault_checks import assert_nothing_lost_doubled_or_wrong, normalize_pending, query

from knit_devtools.services import wait_until
from knit_devtools.stack import Stack
from knit_provider.landing.dead_letters import INFO_COLUMNS, DeadLettersUnreadableError, dead_letters_for_run
from knit_provider.settings import Schemas
from knit_provider.webhook.signature import sign, verify

INTEGRATION = "int-security"
RECEIVER_ROLE, RECEIVER_PASSWORD = "knit_receiver", "pw-" + uuid.uuid4().hex
READER_ROLE = "knit_reader"
AIRFLOW_ROLE = "knit_airflow"
ROLES = (RECEIVER_ROLE, AIRFLOW_ROLE, READER_ROLE)


def _admin(url: str, *statements: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def admin_url(pg_server: Any) -> Iterator[str]:
    """A database where the receiver is a role of its own (README: landing schema owned by it)."""
    url = pg_server.create_database("f_security")
    _admin(
        url,
        *(f"DROP ROLE IF EXISTS {role}" for role in ROLES),
        f"CREATE ROLE {RECEIVER_ROLE} LOGIN PASSWORD '{RECEIVER_PASSWORD}'",
        f"CREATE ROLE {AIRFLOW_ROLE} LOGIN",
        f"CREATE ROLE {READER_ROLE} LOGIN",
        # Both create their schema on start (CREATE SCHEMA IF NOT EXISTS needs CREATE on the database).
        f"GRANT CONNECT, CREATE ON DATABASE f_security TO {RECEIVER_ROLE}, {AIRFLOW_ROLE}",
    )
    yield url
    _admin(
        pg_server.admin_url,
        "DROP DATABASE IF EXISTS f_security WITH (FORCE)",
        *(f"DROP ROLE IF EXISTS {role}" for role in ROLES),
    )


def _as_role(url: str, role: str, password: str | None = None) -> str:
    return re.sub(r"//[^@/]*@", f"//{role}:{password}@" if password else f"//{role}@", url, count=1)


@pytest.fixture(scope="module")
def stack(admin_url: str) -> Iterator[Stack]:
    """Simulator and receiver (DEBUG logs, 64 KiB body limit) landing as ``knit_receiver``."""
    # The receiver reads connections through Airflow, whose logging setup then governs every logger.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "DEBUG")
        running = Stack(
            applications=300,
            seed=3,
            database_url=_as_role(admin_url, RECEIVER_ROLE, RECEIVER_PASSWORD),
            integration_ids=(INTEGRATION,),
            simulator_args=["--invalid-json-share", "0.05"],
            receiver_args=["--log-level", "debug", "--max-body-bytes", "65536"],
        ).start()
    try:
        job_id = running.sim.start_sync(INTEGRATION, running.webhook_url)["data"]["syncJobId"]
        running.sim.wait_job(job_id, timeout=120)
        yield running
    finally:
        running.stop()


def _post(stack: Stack, body: bytes, signature: str | None, **headers: str) -> httpx.Response:
    sent = {"Content-Type": "application/json", "X-Knit-Integration-Id": INTEGRATION, **headers}
    if signature is not None:
        sent["X-Knit-Signature"] = signature
    return httpx.post(stack.receiver_url + "/webhook", content=body, headers=sent, timeout=30)


def _event(event_id: str) -> bytes:
    return orjson.dumps(
        {
            "eventId": event_id,
            "eventType": "record.new",
            "recordId": event_id,
            "syncRunId": "sr_security",
            "eventData": {"info": {"id": event_id}},
        }
    )


def test_each_part_needs_only_its_own_grants(stack: Stack, admin_url: str) -> None:
    """Three roles, as the README recommends: the receiver owns ``knit_landing`` (made by its start-up
    migration) and nothing else; Airflow's normalization reads the landing tables and the dead letters'
    ids (not their bodies), marks runs normalized and owns ``knit``; a reporting role reads ``knit``
    and cannot see the raw envelopes."""
    ((owner,),) = query(admin_url, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'knit_landing'")
    assert owner == RECEIVER_ROLE
    airflow = _as_role(admin_url, AIRFLOW_ROLE)
    receiver = _as_role(admin_url, RECEIVER_ROLE)
    _admin(
        receiver,
        f"GRANT USAGE ON SCHEMA knit_landing TO {AIRFLOW_ROLE}",
        f"GRANT SELECT ON knit_landing.events TO {AIRFLOW_ROLE}",
        f"GRANT SELECT, UPDATE ON knit_landing.sync_runs TO {AIRFLOW_ROLE}",
    )
    with psycopg2.connect(airflow) as conn, conn.cursor() as cur:  # without the dead letters' ids: says what to grant
        with pytest.raises(DeadLettersUnreadableError, match=r"GRANT SELECT \(id, received_at"):
            dead_letters_for_run(cur, Schemas(), "sr_security")
        cur.execute("SELECT 1")  # and the transaction is still usable
    _admin(receiver, f"GRANT SELECT ({', '.join(INFO_COLUMNS)}) ON knit_landing.dead_letters TO {AIRFLOW_ROLE}")
    normalize_pending(airflow)
    assert_nothing_lost_doubled_or_wrong(stack, url=airflow)
    _admin(
        airflow,
        f"GRANT USAGE ON SCHEMA knit TO {READER_ROLE}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA knit TO {READER_ROLE}",
    )

    reader = _as_role(admin_url, READER_ROLE)
    assert query(reader, "SELECT count(*) FROM knit.ats_applications")[0][0] == 300
    for table in ("events", "dead_letters", "sync_runs"):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            query(reader, f"SELECT 1 FROM knit_landing.{table} LIMIT 1")
    # The ids of the simulator's truncated bodies can be read, as reconciliation and the snapshot step do.
    assert query(airflow, "SELECT count(*) FROM knit_landing.dead_letters WHERE event_id IS NOT NULL")[0][0] > 0
    with psycopg2.connect(airflow) as conn, conn.cursor() as cur:
        assert isinstance(dead_letters_for_run(cur, Schemas(), stack.sim.runs()[0]["syncRunId"]), list)
    for column in ("body", "headers"):  # but never a body or its headers
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            query(airflow, f"SELECT {column} FROM knit_landing.dead_letters LIMIT 1")


def test_no_secret_in_any_log_even_at_debug(stack: Stack) -> None:
    """The API key (= signing key) and the database password appear in no log of the receiver or the
    simulator, although the receiver logs at DEBUG, took forged and unsigned bodies, and lost its
    database connection once."""
    forged = _event("sec-forged")
    assert _post(stack, forged, sign(forged, stack.api_key.encode() + b"x")).status_code == 401
    assert _post(stack, forged, None).status_code == 401
    assert _post(stack, b"{not json", sign(b"{not json", stack.api_key.encode())).status_code == 200  # dead letter
    _admin(
        _as_role(stack.database_url, "postgres"),
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{RECEIVER_ROLE}'",
    )
    wait_until(
        lambda: (
            _post(
                stack, _event("sec-after-reconnect"), sign(_event("sec-after-reconnect"), stack.api_key.encode())
            ).status_code
            == 200
        ),
        60,
        "the receiver to reconnect",
    )

    logs = {name: (stack.work_dir / f"{name}.log").read_text(errors="replace") for name in ("receiver", "simulator")}
    assert " DEBUG " in logs["receiver"], "the receiver must log at DEBUG for this test to mean anything"
    assert "Landed a batch" in logs["receiver"], "the receiver's own DEBUG lines must be in its log"
    for name, text in logs.items():
        assert stack.api_key not in text, f"the API key is in the {name} log"
        assert RECEIVER_PASSWORD not in text, f"the database password is in the {name} log"


def test_dead_letters_keep_the_exact_bytes_and_signature_but_no_credentials(stack: Stack) -> None:
    """A signed body that cannot be parsed is kept byte for byte with its headers (and answered 200: it
    is authentic), so it can be re-verified and replayed; headers that can carry credentials are
    dropped before storage."""
    body = b'{"eventId": "sec-broken", "eventType": "record.new", "eventData": {"info": '
    signature = sign(body, stack.api_key.encode())
    token = "tok-" + uuid.uuid4().hex
    answer = _post(
        stack, body, signature, Authorization=f"Bearer {token}", Cookie=f"session={token}", **{"X-Api-Key": token}
    )
    assert answer.status_code == 200
    assert answer.json()["status"] == "dead_letter"
    assert "not valid JSON" in answer.json()["reason"]

    ((stored_body, headers, reason),) = query(
        _as_role(stack.database_url, "postgres"),
        "SELECT body, headers, reason FROM knit_landing.dead_letters WHERE body = %s",
        (body,),
    )
    assert bytes(stored_body) == body
    assert "not valid JSON" in reason
    assert headers["x-knit-integration-id"] == INTEGRATION
    assert verify(bytes(stored_body), headers["x-knit-signature"].encode(), stack.api_key.encode())
    assert token not in orjson.dumps(headers).decode()
    assert not {"authorization", "cookie", "x-api-key"} & set(headers)


def test_replayed_event_is_answered_200_and_stored_once(stack: Stack) -> None:
    """No timestamp header exists to reject a replay, so a replay must be harmless: same eventId,
    one row."""
    body = _event("sec-replayed")
    signature = sign(body, stack.api_key.encode())
    assert [_post(stack, body, signature).status_code for _ in range(3)] == [200, 200, 200]
    assert query(stack.database_url, "SELECT count(*) FROM knit_landing.events WHERE event_id = 'sec-replayed'") == [
        (1,)
    ]


def test_the_signed_body_not_the_header_says_whose_it_is_and_no_shape_is_answered_503(stack: Stack) -> None:
    """On the real receiver: an activation naming another integration than its unsigned
    ``X-Knit-Integration-Id`` is kept as a dead letter saying both, never landed under the header's
    tenant; and a body nested past what the decoders read (msgspec's RecursionError once made it a
    503 at every retry, for Knit's four days) is a dead letter answered 200 at each delivery."""
    key = stack.api_key.encode()
    other = "int-security-other"
    activation = orjson.dumps(
        {
            "eventId": "sec-activate-other",
            "eventType": "app.integration.activate",
            "eventData": {"integrationId": other},
        }
    )
    answer = _post(stack, activation, sign(activation, key))
    assert (answer.status_code, answer.json()["status"]) == (200, "dead_letter")
    assert other in answer.json()["reason"]
    assert INTEGRATION in answer.json()["reason"]
    admin = _as_role(stack.database_url, "postgres")
    assert query(admin, "SELECT count(*) FROM knit_landing.events WHERE event_id = 'sec-activate-other'") == [(0,)]
    assert query(admin, "SELECT count(*) FROM knit_landing.integrations WHERE integration_id = %s", (other,)) == [(0,)]

    for depth in (2_000, 30_000):
        body = b'{"eventId": "sec-deep-%d", "eventType": "record.new", "eventData": ' % depth
        body += b"[" * depth + b"1" + b"]" * depth + b"}"
        answers = [_post(stack, body, sign(body, key)) for _ in range(2)]
        assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "dead_letter")] * 2, depth
        assert query(admin, "SELECT attempts FROM knit_landing.dead_letters WHERE body = %s", (body,)) == [(2,)]


def test_oversized_body_is_413_and_not_stored(stack: Stack) -> None:
    body = orjson.dumps({"eventId": "sec-huge", "eventType": "record.new", "eventData": {"x": "y" * 70_000}})
    assert _post(stack, body, sign(body, stack.api_key.encode())).status_code == 413
    assert query(stack.database_url, "SELECT count(*) FROM knit_landing.events WHERE event_id = 'sec-huge'") == [(0,)]


def test_flood_gets_503_with_retry_after_never_500_and_loses_nothing(admin_url: str, tmp_path: Path) -> None:
    """Injected: the landing table is locked so commits stall, and 120 events arrive at once at a
    receiver with a queue of 4. Everything beyond the queue must be refused at once with 503 and
    ``Retry-After`` (memory stays bounded; Knit retries), never 500; every 200 is a row, and the
    refused events land when re-sent after the lock is released."""
    with Stack(
        applications=1,
        database_url=admin_url,
        integration_ids=(INTEGRATION,),
        work_dir=tmp_path,
        receiver_args=["--queue-size", "4", "--batch-size", "2", "--writers", "1"],
    ) as flooded:
        key = flooded.api_key.encode()
        bodies = [_event(f"flood-{i}") for i in range(120)]
        locker = psycopg2.connect(admin_url)
        try:
            with locker.cursor() as cur:
                cur.execute("LOCK TABLE knit_landing.events IN EXCLUSIVE MODE")

            async def flood() -> list[httpx.Response]:
                limits = httpx.Limits(max_connections=len(bodies))
                async with httpx.AsyncClient(base_url=flooded.receiver_url, timeout=60, limits=limits) as client:
                    tasks = [
                        asyncio.ensure_future(
                            client.post(
                                "/webhook",
                                content=body,
                                headers={"X-Knit-Signature": sign(body, key), "X-Knit-Integration-Id": INTEGRATION},
                            )
                        )
                        for body in bodies
                    ]
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + 30
                    while sum(task.done() for task in tasks) < len(tasks) - 6:  # 2 in the stalled batch, 4 queued
                        assert loop.time() < deadline, "the receiver did not refuse the overflow"
                        await asyncio.sleep(0.02)
                    await asyncio.to_thread(locker.rollback)
                    return list(await asyncio.gather(*tasks))

            answers = asyncio.run(flood())
        finally:
            locker.close()
        statuses = [answer.status_code for answer in answers]
        assert set(statuses) == {200, 503}, statuses
        assert statuses.count(503) >= len(bodies) - 12, "beyond the queue, requests are refused, not held"
        assert all(a.headers["retry-after"].isdigit() for a in answers if a.status_code == 503)

        landed = {
            row[0]
            for row in query(admin_url, "SELECT event_id FROM knit_landing.events WHERE event_id LIKE 'flood-%%'")
        }
        assert landed == {
            orjson.loads(body)["eventId"] for body, a in zip(bodies, answers, strict=True) if a.status_code == 200
        }
        retried = [
            _post(flooded, body, sign(body, key)).status_code
            for body, a in zip(bodies, answers, strict=True)
            if a.status_code == 503
        ]
        assert set(retried) == {200}
        assert query(
            admin_url,
            "SELECT count(*), count(DISTINCT event_id) FROM knit_landing.events WHERE event_id LIKE 'flood-%%'",
        ) == [(120, 120)]
