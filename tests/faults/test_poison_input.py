"""Fault: poison input interleaved with a running sync's good events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import psycopg2
from fault_checks import (
    INTEGRATION,
    SCHEMAS,
    assert_nothing_lost_doubled_or_wrong,
    normalize_pending,
    only_run,
    query,
    wait_landed,
)

from knit_devtools.stack import Stack
from knit_provider.normalize import normalize_runs
from knit_provider.webhook.signature import sign

APPLICATIONS = 3_000
MAX_BODY = 64 * 1024
POISON_INTEGRATION = "int-poison"
POISON_RUN = "sr_poison"


def envelope(event_id: str, event_type: str = "record.new", **fields: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventType": event_type,
        "syncType": "delta_sync",
        "syncDataType": "ats_applications",
        "syncJobId": "sj_poison",
        "syncRunId": POISON_RUN,
        **fields,
    }


def poison_cases() -> list[tuple[str, bytes, str | None, int]]:
    """(name, body, key to sign with or None for no signature, expected answer).

    Every authentic body is answered 200: as an event, or kept as a dead letter (``UNUSABLE``).
    """
    good_key, other_key = "{good}", "not-the-key"
    wrong_types = [
        envelope("p-info-is-text", recordId="pa1", eventData={"info": "Jane Doe", "interviews": {"id": 1}}),
        envelope("p-data-is-list", recordId="pa2", eventData=[1, 2, 3]),
        envelope(
            "p-stage-is-list",
            recordId="pa3",
            eventData={
                "info": {"id": "pa3", "status": 7, "appliedAt": 12, "candidate": "c"},
                "currentStage": ["x"],
                "offers": "none",
                "attachments": [1, "a", None],
            },
        ),
        envelope("p-deleted-null", "record.deleted", recordId="pa4", eventData=None),
    ]
    run_end = envelope(
        "p-all-consumed",
        "sync.events.allConsumed",
        eventData={
            "status": "COMPLETED",
            "processed": 4,
            "emitted": 4,
            "consumed": 4,
            "startedAt": "1",
            "processedAt": "2",
            "completedAt": "3",
            "complete": True,
        },
    )
    cases: list[tuple[str, bytes, str | None, int]] = [
        (f"wrong types {doc['eventId']}", orjson.dumps(doc), good_key, 200) for doc in wrong_types
    ]
    cases += [
        ("poison run complete", orjson.dumps(run_end), good_key, 200),
        (
            "unknown event type",
            orjson.dumps(
                {
                    "eventId": "p-unknown",
                    "eventType": "app.integration.activate",
                    "eventData": {"integrationId": POISON_INTEGRATION},
                }
            ),
            good_key,
            200,
        ),
        ("missing eventId", orjson.dumps({"eventType": "record.new", "eventData": {}}), good_key, 200),
        ("missing eventType", orjson.dumps({"eventId": "p-no-type", "eventData": {}}), good_key, 200),
        ("eventId is an object", orjson.dumps({"eventId": {"id": 1}, "eventType": "record.new"}), good_key, 200),
        ("body is a list", orjson.dumps([envelope("p-in-a-list")]), good_key, 200),
        (
            "NUL in a value",
            orjson.dumps(envelope("p-nul", recordId="pa5", eventData={"info": {"id": "a\x00b"}})),
            good_key,
            200,
        ),
        ("invalid JSON", b'{"eventId": "p-broken", "eventType": "record.new", "eventData": {', good_key, 200),
        ("huge body", orjson.dumps(envelope("p-huge", recordId="pa6", eventData={"x": "y" * MAX_BODY})), good_key, 413),
        ("signed with another key", orjson.dumps(envelope("p-forged", recordId="pa7", eventData={})), other_key, 401),
        ("unsigned", orjson.dumps(envelope("p-unsigned", recordId="pa8", eventData={})), None, 401),
    ]
    return cases


UNUSABLE = (
    "missing eventId",
    "missing eventType",
    "eventId is an object",
    "body is a list",
    "NUL in a value",
    "invalid JSON",
)
POSTS = 2  # each poison body is sent twice, as Knit's retries would


def test_poison_interleaved_with_a_sync_is_answered_and_never_disturbs_it(make_stack: Callable[..., Stack]) -> None:
    """Injected, while an initial sync of 3,000 applications is delivering, each twice: signed events of
    unknown type and with wrong-typed fields (a whole poison run of them, which normalization must
    survive), signed bodies missing eventId/eventType, with an object for an id, a list for a body, a
    NUL, or not JSON at all (authentic, so 200 and one dead letter each with two attempts: never
    bounced), a body over the limit (413), a forged and an unsigned body (401, nothing stored); plus
    the simulator's own truncated bodies (``--invalid-json-share``, kept the same way).
    """
    stack = make_stack(
        APPLICATIONS,
        simulator_args=["--concurrency", "16", "--invalid-json-share", "0.01"],
        receiver_args=["--max-body-bytes", str(MAX_BODY)],
    )
    job_id = stack.sim.start_sync(INTEGRATION, stack.webhook_url)["data"]["syncJobId"]
    wait_landed(stack.database_url, APPLICATIONS // 5, job_id)

    answers: dict[str, list[int]] = {}
    cases = poison_cases()
    with httpx.Client(base_url=stack.receiver_url, timeout=30) as client:
        for name, body, key, _ in cases:
            headers = {"Content-Type": "application/json", "X-Knit-Integration-Id": POISON_INTEGRATION}
            if key is not None:
                secret = (stack.api_key if key == "{good}" else key).encode()
                headers["X-Knit-Signature"] = sign(body, secret)
            answers[name] = [client.post("/webhook", content=body, headers=headers).status_code for _ in range(POSTS)]
    assert only_run(stack)["state"] != "completed", "the poison must arrive while the sync is running"
    assert answers == {name: [expected] * POSTS for name, _, _, expected in cases}

    run = stack.sim.wait_job(job_id, timeout=120)["runs"][-1]
    assert run["invalidJsonSent"] > 0
    assert sorted(normalize_pending(stack.database_url)) == sorted([run["syncRunId"], POISON_RUN])
    assert_nothing_lost_doubled_or_wrong(stack)

    stored = dict(
        query(
            stack.database_url,
            "SELECT event_id, payload::text FROM knit_landing.events WHERE integration_id = %s",
            (POISON_INTEGRATION,),
        )
    )
    accepted = {
        orjson.loads(body)["eventId"]: body for name, body, _, status in cases if status == 200 and name not in UNUSABLE
    }
    assert set(stored) == set(accepted), "exactly the usable poison is stored as events"
    assert all(orjson.loads(stored[i]) == orjson.loads(accepted[i]) for i in accepted)
    letters = {
        bytes(body): attempts
        for body, attempts in query(stack.database_url, "SELECT body, attempts FROM knit_landing.dead_letters")
    }
    kept = {body: POSTS for name, body, _, _ in cases if name in UNUSABLE}
    assert {body: attempts for body, attempts in letters.items() if body in kept} == kept, (
        "one dead letter per distinct body, byte-exact, with every attempt counted"
    )
    assert len(letters) == len(kept) + run["invalidJsonSent"]
    nul_body = next(body for name, body, _, _ in cases if name == "NUL in a value")
    assert query(
        stack.database_url, "SELECT sync_run_id FROM knit_landing.dead_letters WHERE body = %s", (nul_body,)
    ) == [(POISON_RUN,)], "a dead letter is counted against the run its ids name"
    refused = [body for _, body, _, status in cases if status in (401, 413)]
    assert not set(refused) & set(letters), "a forged, unsigned or oversized body is never stored"

    ((type_errors,),) = query(
        stack.database_url, "SELECT type_error_events FROM knit.normalized_runs WHERE sync_run_id = %s", (POISON_RUN,)
    )
    assert type_errors > 0
    conn = psycopg2.connect(stack.database_url)
    try:  # normalizing the poison run again changes nothing
        (again,) = normalize_runs(conn, [POISON_RUN], SCHEMAS)
    finally:
        conn.close()
    assert again.applications_changed == 0
