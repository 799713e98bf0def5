"""Every answer of ``POST /webhook`` and ``GET /health``, from both front ends, against a real Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import psycopg2
import pytest
from receiver_helpers import SECRET, InProcess, event, new_id, scalar, settings_for, signed

from knit_provider.webhook.signature import sign


def _count(url: str, event_id: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM knit_landing.events WHERE event_id = %s", (event_id,)))


def _dead_letters(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM knit_landing.dead_letters"))


def _letter(url: str, body: bytes) -> dict[str, Any]:
    """The one dead-letter row of ``body`` (they are unique by body)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM knit_landing.dead_letters WHERE body = %s", (body,))
        rows = cur.fetchall()
        assert len(rows) == 1, f"{len(rows)} dead letters for one body"
        return dict(zip([d[0] for d in cur.description], rows[0], strict=True))


def test_signed_event_lands_with_its_columns(in_process: InProcess, landing_url: str) -> None:
    document = event(eventType="app.integration.activate")  # unknown types are stored too
    response = in_process.post_event(document, **{"X-Knit-Execution-Id": "exec-42"})
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    with psycopg2.connect(landing_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT event_type, sync_run_id, sync_job_id, record_id, integration_id, execution_id, payload "
            "FROM knit_landing.events WHERE event_id = %s",
            (document["eventId"],),
        )
        assert cur.fetchone() == (
            "app.integration.activate",
            "sr_test",
            "sj_test",
            "app-1",
            "int-test",
            "exec-42",
            document,
        )


def test_event_without_execution_id_stores_null(in_process: InProcess, landing_url: str) -> None:
    document = event()
    assert in_process.post_event(document).status_code == 200
    assert (
        scalar(landing_url, "SELECT execution_id FROM knit_landing.events WHERE event_id = %s", (document["eventId"],))
        is None
    )


def test_duplicate_is_200_and_stores_nothing_new(in_process: InProcess, landing_url: str) -> None:
    document = event()
    assert in_process.post_event(document).status_code == 200
    assert in_process.post_event(document).status_code == 200
    assert _count(landing_url, document["eventId"]) == 1


def test_same_event_50_times_at_once_stores_one_row(in_process: InProcess, landing_url: str) -> None:
    body = orjson.dumps(event())

    async def burst() -> list[int]:
        responses = await asyncio.gather(
            *(in_process.client.post("/webhook", content=body, headers=signed(body)) for _ in range(50))
        )
        return [r.status_code for r in responses]

    assert in_process.run(burst()) == [200] * 50
    assert _count(landing_url, orjson.loads(body)["eventId"]) == 1


def test_compact_reserialised_signature_is_accepted(in_process: InProcess, landing_url: str) -> None:
    document = event(eventData={"name": "Zo\u00eb <z@example.com>"})
    pretty = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    response = in_process.post(
        pretty, {"X-Knit-Signature": sign(orjson.dumps(document), SECRET), "X-Knit-Execution-Id": "exec-compact"}
    )
    assert response.status_code == 200
    assert _count(landing_url, document["eventId"]) == 1
    assert (
        scalar(landing_url, "SELECT execution_id FROM knit_landing.events WHERE event_id = %s", (document["eventId"],))
        == "exec-compact"
    )
    escaped = b'{"eventId":"%s","eventType":"record.new","eventData":{"n":"Zo\\u00eb"}}' % new_id().encode()
    assert (
        in_process.post(escaped, {"X-Knit-Signature": sign(orjson.dumps(orjson.loads(escaped)), SECRET)}).status_code
        == 200
    )


def _padded(size: int) -> tuple[bytes, str]:
    """A pretty-printed event of about ``size`` bytes and the signature of its compact form."""
    document = event(eventData={"blob": "x" * size})
    return orjson.dumps(document, option=orjson.OPT_INDENT_2), sign(orjson.dumps(document), SECRET)


def test_compact_form_is_tried_only_up_to_its_size_limit(landing_url: str, front: str) -> None:
    """Structural: above ``compact_signature_max_bytes`` a body signed over its compact form is refused,
    so a forger's large body costs the raw HMAC only, never a parse and a re-encode."""
    harness = InProcess(settings_for(landing_url, compact_signature_max_bytes=4096), front)
    try:
        below, below_signature = _padded(3000)
        above, above_signature = _padded(5000)
        assert harness.post(below, {"X-Knit-Signature": below_signature}).status_code == 200
        response = harness.post(above, {"X-Knit-Signature": above_signature})
        assert response.status_code == 401
        assert "does not match" in response.json()["error"]
        assert harness.post(above, {"X-Knit-Signature": sign(above, SECRET)}).status_code == 200  # raw: any size
    finally:
        harness.close()
    off = InProcess(settings_for(landing_url, compact_signature_max_bytes=0), front)
    try:
        small, small_signature = _padded(10)
        assert off.post(small, {"X-Knit-Signature": small_signature}).status_code == 401
    finally:
        off.close()


def test_forged_5_mib_body_is_401_without_the_compact_fallback(in_process: InProcess, landing_url: str) -> None:
    """Default limits: a 5 MiB body (just under the body limit) signed over its compact form, which a
    forger could produce for any body it sends, is refused without being parsed; nothing is stored."""
    assert in_process.settings.compact_signature_max_bytes == 256 * 1024
    body, compact_signature = _padded(5 * 1024 * 1024 - 1024)
    assert len(body) <= in_process.settings.max_body_bytes
    dead_before = _dead_letters(landing_url)
    response = in_process.post(body, {"X-Knit-Signature": compact_signature})
    assert response.status_code == 401
    assert _count(landing_url, orjson.loads(body)["eventId"]) == 0
    assert _dead_letters(landing_url) == dead_before


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing X-Knit-Signature"),
        ({"X-Knit-Signature": "not-it"}, "does not match"),
        ({"X-Knit-Signature": "signed-with-another-key"}, "does not match"),
    ],
)
def test_missing_or_wrong_signature_is_401_and_stores_nothing(
    in_process: InProcess, landing_url: str, headers: dict[str, str], message: str
) -> None:
    document = event()
    body = orjson.dumps(document)
    if headers.get("X-Knit-Signature") == "signed-with-another-key":
        headers = {"X-Knit-Signature": sign(body, b"another-key")}
    dead_before = _dead_letters(landing_url)
    response = in_process.post(body, headers)
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert _count(landing_url, document["eventId"]) == 0
    assert _dead_letters(landing_url) == dead_before


def test_tampered_body_is_401(in_process: InProcess) -> None:
    body = orjson.dumps(event())
    headers = signed(body)
    assert in_process.post(body.replace(b"Ada", b"Eve"), headers).status_code == 401


def test_body_over_the_limit_is_413_by_content_length(landing_url: str, front: str) -> None:
    harness = InProcess(settings_for(landing_url, max_body_bytes=1000), front)
    try:
        body = orjson.dumps(event(eventData={"blob": "x" * 2000}))
        response = harness.post(body, signed(body))
        assert response.status_code == 413
        assert "1000 bytes" in response.json()["error"]
    finally:
        harness.close()


def test_streamed_body_over_the_limit_is_413_without_reading_it_all(landing_url: str) -> None:
    # The ASGI front end; the standalone server's twin is in test_webhook_server (over a socket).
    harness = InProcess(settings_for(landing_url, max_body_bytes=10_000), "asgi")
    chunks_sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        while chunks_sent < 10_000:  # 10 MB if it were all read
            chunks_sent += 1
            yield b"x" * 1000

    try:
        response = harness.post(endless(), {"X-Knit-Signature": "irrelevant"})
        assert response.status_code == 413
        assert chunks_sent < 100
    finally:
        harness.close()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b"not json", "not valid JSON"),
        (b'{"eventType": "record.new"}', "eventId is missing"),
        (b'{"eventId": "x-no-type"}', "eventType is missing"),
        (b'{"eventId": "", "eventType": "record.new"}', "eventId is missing"),
        (b'{"eventId": {"a": 1}, "eventType": "record.new"}', "eventId must be a string"),
        (b'{"eventId": "%s", "eventType": "record.new"}' % (b"i" * 513), "longer than"),
        (b'{"eventId": "nul", "eventType": "record.new", "eventData": {"k": "a\\u0000b"}}', "NUL"),
        (b'{"eventId": "nan", "eventType": "record.new", "eventData": NaN}', "not valid JSON"),
        (
            b'{"eventId": "deep-nul", "eventType": "x", "eventData": '
            + b'["\\u0000",' * 1000
            + b"1"
            + b"]" * 1000
            + b"}",
            "NUL",
        ),
    ],
)
def test_signed_unusable_body_is_200_once_kept_as_a_dead_letter(
    in_process: InProcess, landing_url: str, body: bytes, reason: str
) -> None:
    """Authentic but not a usable event: Knit's retries cannot change it, so it is kept and answered 200."""
    headers = signed(body, Authorization="Bearer secret-token", Cookie="session=1")
    response = in_process.post(body, headers)
    assert response.status_code == 200
    assert response.json()["status"] == "dead_letter"
    assert reason in response.json()["reason"]
    letter = _letter(landing_url, body)
    assert reason in letter["reason"]
    assert bytes(letter["body"]) == body
    assert letter["integration_id"] == "int-test"
    assert "x-knit-signature" in letter["headers"]
    assert not {"authorization", "cookie"} & set(letter["headers"])


def test_truncated_body_posted_three_times_is_one_dead_letter_with_three_attempts(
    in_process: InProcess, landing_url: str
) -> None:
    document = event()
    whole = orjson.dumps(document)
    body = whole[: whole.index(b'"eventData"') + 20]  # cut inside eventData: eventId and eventType are readable
    answers = [in_process.post(body, signed(body, **{"X-Knit-Execution-Id": "exec-7"})) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert {a.json()["status"] for a in answers} == {"dead_letter"}
    letter = _letter(landing_url, body)
    assert letter["attempts"] == 3
    assert letter["received_at"] < letter["last_received_at"]
    assert "not valid JSON" in letter["reason"]
    assert (letter["event_id"], letter["event_type"]) == (document["eventId"], "record.new")
    assert letter["headers"]["x-knit-execution-id"] == "exec-7"
    assert _count(landing_url, document["eventId"]) == 0


def test_body_without_event_id_is_counted_against_its_run(in_process: InProcess, landing_url: str) -> None:
    run_id = new_id("sr")
    document = event(syncRunId=run_id, syncJobId="sj-ids", recordId="app-9")
    del document["eventId"]
    body = orjson.dumps(document)
    assert in_process.post(body, signed(body)).status_code == 200
    letter = _letter(landing_url, body)
    assert (letter["event_id"], letter["event_type"], letter["sync_job_id"], letter["sync_run_id"]) == (
        None,
        "record.new",
        "sj-ids",
        run_id,
    )
    assert "eventId is missing" in letter["reason"]


def test_ids_that_cannot_be_stored_are_left_out_of_the_dead_letter(in_process: InProcess, landing_url: str) -> None:
    body = orjson.dumps({"eventId": "", "eventType": "record.new", "syncJobId": ["sj"], "syncRunId": "r" * 600})
    assert in_process.post(body, signed(body)).status_code == 200
    letter = _letter(landing_url, body)
    assert (letter["event_id"], letter["event_type"], letter["sync_job_id"], letter["sync_run_id"]) == (
        None,
        "record.new",
        None,
        None,
    )


def test_number_beyond_double_range_is_valid_json_and_lands(in_process: InProcess, landing_url: str) -> None:
    # JSON puts no limit on numbers; jsonb keeps this one exactly as numeric.
    body = b'{"eventId": "%s", "eventType": "record.new", "eventData": {"n": 1e999}}' % new_id("big").encode()
    assert in_process.post(body, signed(body)).status_code == 200
    event_id = orjson.loads(body.replace(b"1e999", b"0"))["eventId"]
    assert (
        scalar(
            landing_url, "SELECT payload #>> '{eventData,n}' FROM knit_landing.events WHERE event_id = %s", (event_id,)
        )
        == "1" + "0" * 999
    )


def test_unsigned_malformed_body_is_400_and_not_dead_lettered(landing_url: str, front: str) -> None:
    harness = InProcess(settings_for(landing_url, secret=None, unsigned=True), front)
    try:
        before = _dead_letters(landing_url)
        for body in (b"[]", b'{"eventId": "x"', b'{"eventType": "record.new"}'):
            response = harness.post(body, {})
            assert response.status_code == 400, body
            assert response.json()["error"]
        assert _dead_letters(landing_url) == before
        document = event()
        assert harness.post(orjson.dumps(document), {}).status_code == 200
        assert _count(landing_url, document["eventId"]) == 1
    finally:
        harness.close()


def test_event_the_database_refuses_is_isolated_from_its_batch(landing_url: str, front: str) -> None:
    # 1e-20000 is valid JSON that Python accepts but Postgres's numeric cannot hold: the batch
    # fails, the writer bisects, the good events land and only this one is set aside as a dead
    # letter, answered 200 since it is authentic (sent again, it only counts an attempt).
    harness = InProcess(settings_for(landing_url, batch_wait_ms=50, writers=1), front)
    good = [event() for _ in range(20)]
    bad_id = new_id("poison")
    bad = (
        b'{"eventId": "%s", "eventType": "record.new", "syncRunId": "sr-refused", "eventData": {"n": 1e-20000}}'
        % bad_id.encode()
    )

    async def send_all() -> list[httpx.Response]:
        posts = [
            harness.client.post("/webhook", content=orjson.dumps(d), headers=signed(orjson.dumps(d))) for d in good[:10]
        ]
        posts.append(harness.client.post("/webhook", content=bad, headers=signed(bad)))
        posts += [
            harness.client.post("/webhook", content=orjson.dumps(d), headers=signed(orjson.dumps(d))) for d in good[10:]
        ]
        return list(await asyncio.gather(*posts))

    try:
        answers = harness.run(send_all())
        again = harness.post(bad, signed(bad))
    finally:
        harness.close()
    assert [a.status_code for a in answers] == [200] * 21
    assert answers[10].json()["status"] == "dead_letter"
    assert "refused" in answers[10].json()["reason"]
    assert (again.status_code, again.json()["status"]) == (200, "dead_letter")
    assert all(_count(landing_url, d["eventId"]) == 1 for d in good)
    assert _count(landing_url, bad_id) == 0
    letter = _letter(landing_url, bad)
    assert "refused" in letter["reason"]
    assert (letter["attempts"], letter["event_id"], letter["sync_run_id"]) == (2, bad_id, "sr-refused")


def test_full_queue_is_503_with_retry_after(landing_url: str, front: str) -> None:
    harness = InProcess(settings_for(landing_url, queue_size=1, writers=1), front)
    locker = psycopg2.connect(landing_url)
    try:
        assert harness.post_event(event()).status_code == 200  # the writer is connected
        with locker.cursor() as cur:  # the writer's next batch waits for this lock
            cur.execute("LOCK TABLE knit_landing.events IN ACCESS EXCLUSIVE MODE")
        writer = harness.writer

        def writer_waits_for_lock() -> bool:
            return bool(
                scalar(
                    landing_url,
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'knit_landing.events'::regclass",
                )
            )

        async def post(document: dict[str, object]) -> httpx.Response:
            body = orjson.dumps(document)
            return await harness.client.post("/webhook", content=body, headers=signed(body))

        async def until(condition: Callable[[], bool]) -> None:
            for _ in range(1000):
                if condition():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("condition not reached")

        async def scenario() -> tuple[int, int, int, str]:
            in_batch = asyncio.ensure_future(post(event()))
            await until(writer_waits_for_lock)
            queued = asyncio.ensure_future(post(event()))
            await until(lambda: writer.queue_depth == 1)
            rejected = await post(event())
            locker.rollback()
            return (
                rejected.status_code,
                (await in_batch).status_code,
                (await queued).status_code,
                rejected.headers.get("retry-after", ""),
            )

        rejected, in_batch, queued, retry_after = harness.run(scenario())
        assert (rejected, in_batch, queued) == (503, 200, 200)
        assert retry_after.isdigit()
    finally:
        locker.close()
        harness.close()


def test_unreachable_database_is_503_with_retry_after_and_health_says_so(front: str) -> None:
    harness = InProcess(settings_for("postgresql://nobody@127.0.0.1:1/none", retry_after_seconds=7), front)
    try:
        response = harness.post_event(event())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        health = harness.run(harness.client.get("/health"))
        assert (health.status_code, health.json()) == (503, {"status": "unavailable"})  # the details are metrics
    finally:
        harness.close()


def test_health_reports_a_status_only(in_process: InProcess) -> None:
    response = in_process.run(in_process.client.get("/health"))
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_other_methods_and_paths(in_process: InProcess) -> None:
    assert in_process.run(in_process.client.get("/webhook")).status_code == 405
    assert in_process.run(in_process.client.post("/elsewhere", content=b"{}")).status_code == 404


def test_both_front_ends_give_identical_answers(landing_url: str) -> None:
    """The same requests, one by one, to the ASGI app and to the standalone server: same status, body, headers."""
    duplicate = orjson.dumps(event())
    requests: list[tuple[str, str, bytes, dict[str, str]]] = [
        ("POST", "/webhook", duplicate, signed(duplicate)),
        ("POST", "/webhook", duplicate, signed(duplicate)),
        ("POST", "/webhook", duplicate, {}),
        ("POST", "/webhook", duplicate, {"X-Knit-Signature": "nope"}),
        ("POST", "/webhook", b"[1]", signed(b"[1]")),
        ("POST", "/webhook", b"{", signed(b"{")),
        ("POST", "/webhook", b'{"eventId": "x"}', signed(b'{"eventId": "x"}')),
        ("POST", "/webhook", b"x" * 2000, signed(b"x" * 2000)),
        ("GET", "/webhook", b"", {}),
        ("PUT", "/health", b"", {}),
        ("POST", "/elsewhere", b"{}", {}),
        ("GET", "/health", b"", {}),
        ("GET", "/webhook?x=1", b"", {}),
    ]
    compared = ("content-type", "retry-after", "allow")

    def answers(front: str) -> list[tuple[int, bytes, dict[str, str]]]:
        harness = InProcess(settings_for(landing_url, max_body_bytes=1000), front)
        try:
            results = []
            for method, path, body, headers in requests:
                response = harness.run(harness.client.request(method, path, content=body, headers=headers))
                results.append(
                    (
                        response.status_code,
                        response.content,
                        {name: response.headers[name] for name in compared if name in response.headers},
                    )
                )
            return results
        finally:
            harness.close()

    asgi, raw = answers("asgi"), answers("raw")
    assert [status for status, _, _ in asgi] == [200, 200, 401, 401, 200, 200, 200, 413, 405, 405, 404, 200, 405]
    assert raw == asgi


# -- what the signature covers decides (issue 21) ---------------------------------------------------
def _activation(integration_id: str) -> bytes:
    return orjson.dumps(
        {
            "eventId": new_id("activate"),
            "eventType": "app.integration.activate",
            "eventData": {"integrationId": integration_id, "activatedAt": "1700000000000"},
        }
    )


def _stored_integration(url: str, body: bytes) -> Any:
    event_id = orjson.loads(body)["eventId"]
    return scalar(url, "SELECT integration_id FROM knit_landing.events WHERE event_id = %s", (event_id,))


def _registered(url: str, integration_id: str) -> int:
    return int(
        scalar(url, "SELECT count(*) FROM knit_landing.integrations WHERE integration_id = %s", (integration_id,))
    )


def test_integration_the_signed_body_names_wins_over_a_different_header(
    in_process: InProcess, landing_url: str
) -> None:
    """``X-Knit-Integration-Id`` is not signed: where the body names the integration, the body decides;
    a header naming another is a dead letter saying both, and nothing lands under the header's tenant."""
    tenant, victim = new_id("int-body"), new_id("int-victim")
    body_only = _activation(tenant)
    assert in_process.post(body_only, {"X-Knit-Signature": sign(body_only, SECRET)}).status_code == 200
    assert _stored_integration(landing_url, body_only) == tenant
    agreeing = _activation(tenant)
    assert in_process.post(agreeing, {**signed(agreeing), "X-Knit-Integration-Id": tenant}).status_code == 200
    assert _stored_integration(landing_url, agreeing) == tenant

    replayed = _activation(tenant)
    response = in_process.post(replayed, {**signed(replayed), "X-Knit-Integration-Id": victim})
    assert (response.status_code, response.json()["status"]) == (200, "dead_letter")
    assert tenant in response.json()["reason"]
    assert victim in response.json()["reason"]
    assert _count(landing_url, orjson.loads(replayed)["eventId"]) == 0
    assert _registered(landing_url, victim) == 0
    letter = _letter(landing_url, replayed)
    assert tenant in letter["reason"]
    assert victim in letter["reason"]
    assert bytes(letter["body"]) == replayed


def _as_sent(headers: dict[str, str], raw: dict[str, bytes]) -> dict[bytes, bytes]:
    """``headers`` with ``raw`` values put in byte for byte (httpx would encode a str as ASCII)."""
    return {name.encode(): value.encode() for name, value in headers.items()} | {k.encode(): v for k, v in raw.items()}


def test_header_ids_are_utf8_and_one_that_is_not_clean_text_is_a_dead_letter(
    in_process: InProcess, landing_url: str
) -> None:
    tenant, execution = "intégration-Ωmega-" + new_id(), "exécution-1"
    body = orjson.dumps(event(syncRunId=new_id("sr")))  # a new run: a run keeps its first integration
    headers = _as_sent(
        signed(body), {"X-Knit-Integration-Id": tenant.encode(), "X-Knit-Execution-Id": execution.encode()}
    )
    assert in_process.post(body, headers).status_code == 200
    with psycopg2.connect(landing_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT integration_id, execution_id FROM knit_landing.events WHERE event_id = %s",
            (orjson.loads(body)["eventId"],),
        )
        assert cur.fetchone() == (tenant, execution)

    for header, value, reason in [
        ("X-Knit-Integration-Id", b"int-\xff\xfe", "X-Knit-Integration-Id is not valid UTF-8"),
        ("X-Knit-Integration-Id", b"int\tsplit", "holds a control character"),
        ("X-Knit-Execution-Id", b"exec-\xc3", "X-Knit-Execution-Id is not valid UTF-8"),
    ]:
        body = orjson.dumps(event())
        response = in_process.post(body, _as_sent(signed(body), {header: value}))
        assert (response.status_code, response.json()["status"]) == (200, "dead_letter"), value
        assert reason in response.json()["reason"]
        letter = _letter(landing_url, body)
        assert reason in letter["reason"]
        assert _count(landing_url, orjson.loads(body)["eventId"]) == 0
        # The header is kept readable: a byte that is not UTF-8, and a control character, as \xNN.
        assert letter["headers"][header.lower()] == value.decode("utf-8", "backslashreplace").replace("\t", "\\x09")
        assert letter["integration_id"] == (None if header == "X-Knit-Integration-Id" else "int-test")


def _nested(depth: int) -> bytes:
    return (
        b'{"eventId": "%s", "eventType": "record.new", "eventData": ' % new_id(f"deep{depth}").encode()
        + b"[" * depth
        + b"1"
        + b"]" * depth
        + b"}"
    )


@pytest.mark.parametrize(("depth", "status"), [(1_000, "ok"), (2_000, "dead_letter"), (200_000, "dead_letter")])
def test_signed_body_nested_deeper_than_the_fast_decoder_is_200_and_stored_once(
    in_process: InProcess, landing_url: str, depth: int, status: str
) -> None:
    """msgspec gives up at ~1,000 levels with RecursionError: the full parse takes over (1,024 levels),
    and deeper is a dead letter with its reason. Never a 503 that Knit would retry for four days."""
    body = _nested(depth)
    response = in_process.post(body, signed(body))
    assert (response.status_code, response.json()["status"]) == (200, status)
    landed = _count(landing_url, orjson.loads(body[: body.index(b', "eventData"')] + b"}")["eventId"])
    if status == "ok":
        assert landed == 1
    else:
        assert "depth limit exceeded" in response.json()["reason"]
        assert (landed, bytes(_letter(landing_url, body)["body"])) == (0, body)


def test_unsigned_mode_answers_400_for_headers_and_depths_it_cannot_keep(landing_url: str, front: str) -> None:
    harness = InProcess(settings_for(landing_url, secret=None, unsigned=True), front)
    try:
        tenant, victim = new_id("int-body"), new_id("int-victim")
        mismatch = harness.post(_activation(tenant), {"X-Knit-Integration-Id": victim})
        assert mismatch.status_code == 400
        assert tenant in mismatch.json()["error"]
        assert victim in mismatch.json()["error"]
        garbled = harness.post(orjson.dumps(event()), _as_sent({}, {"X-Knit-Integration-Id": b"int-\xff"}))
        assert (garbled.status_code, "not valid UTF-8" in garbled.json()["error"]) == (400, True)
        deep = harness.post(_nested(2_000), {})
        assert (deep.status_code, "depth limit exceeded" in deep.json()["error"]) == (400, True)
        assert _registered(landing_url, victim) == 0
    finally:
        harness.close()


def test_only_the_compact_form_verifies_so_the_compact_form_is_what_is_stored(
    in_process: InProcess, landing_url: str
) -> None:
    """Signed over ``100000.0``, sent as ``100000.00000000000001``: both parse to the same double, but
    the extra digits are not covered by the signature, so the bytes signed are stored, not the bytes sent."""
    event_id = new_id("compact")
    sent = (
        b'{"eventId": "%s", "eventType": "record.new", "eventData": {"n": 100000.00000000000001}}' % event_id.encode()
    )
    covered = orjson.dumps(orjson.loads(sent))
    assert b'{"n":100000.0}' in covered
    assert in_process.post(sent, {"X-Knit-Signature": sign(covered, SECRET)}).status_code == 200
    with psycopg2.connect(landing_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT payload #>> '{eventData,n}', payload = %s::jsonb FROM knit_landing.events WHERE event_id = %s",
            (covered.decode(), event_id),
        )
        assert cur.fetchone() == ("100000.0", True)

    unusable = b'{"eventId": "%s", "eventData": {"n": 1.50}}' % new_id("compact-dead").encode()
    covered = orjson.dumps(orjson.loads(unusable))
    response = in_process.post(unusable, {"X-Knit-Signature": sign(covered, SECRET)})
    assert (response.status_code, response.json()["status"]) == (200, "dead_letter")
    assert bytes(_letter(landing_url, covered)["body"]) == covered  # with its signature: verifiable as kept
    assert int(scalar(landing_url, "SELECT count(*) FROM knit_landing.dead_letters WHERE body = %s", (unusable,))) == 0


def _batches() -> tuple[float, float]:
    """(batches committed, events and dead letters in them) by this process's writers so far."""
    from prometheus_client import REGISTRY

    count = REGISTRY.get_sample_value("knit_webhook_batch_size_count") or 0.0
    total = REGISTRY.get_sample_value("knit_webhook_batch_size_sum") or 0.0
    return count, total


def test_same_unusable_body_from_concurrent_connections_in_one_batch_is_one_dead_letter(
    landing_url: str, front: str
) -> None:
    """Knit retrying on several connections at once: the copies meet in one batch (one writer, which
    waits until the batch holds them all), and ``land_dead_letters`` must fold them into one row (one
    ON CONFLICT may not touch a row twice: without that, the whole batch fails and every copy gets 503)."""
    copies = 6
    harness = InProcess(settings_for(landing_url, writers=1, batch_size=copies, batch_wait_ms=30_000), front)
    body = orjson.dumps(event(new_id("twin")))[:-40]  # truncated: signed, but not an event

    async def at_once() -> list[httpx.Response]:
        return list(
            await asyncio.gather(
                *(harness.client.post("/webhook", content=body, headers=signed(body)) for _ in range(copies))
            )
        )

    before = _batches()
    try:
        answers = harness.run(at_once())
    finally:
        harness.close()
    after = _batches()
    assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "dead_letter")] * copies
    assert (after[0] - before[0], after[1] - before[1]) == (1, copies), "the copies shared one batch"
    assert _letter(landing_url, body)["attempts"] == copies
