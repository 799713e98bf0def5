"""Units of the receiver that need no server: signature, envelope, settings, error classification."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import orjson
import pytest

from knit_provider.landing.store import Failure, classify
from knit_provider.webhook.envelope import (
    MAX_ID_CHARS,
    DeadLetter,
    EnvelopeError,
    parse_json,
    read_event,
    read_ids,
    safe_headers,
    to_event,
)
from knit_provider.webhook.handling import Head, check_headers
from knit_provider.webhook.settings import ReceiverSettings, SettingsError, resolve_settings
from knit_provider.webhook.signature import may_differ_when_compacted, sign, verify, verify_compact

KEY = b"k3y"


# -- signature -------------------------------------------------------------------------------------
def test_signature_is_unpadded_base64url_of_hmac_sha256() -> None:
    # Reference value computed independently: base64url(HMAC-SHA256("k3y", '{"a":1}')) without "=".
    import base64
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = base64.urlsafe_b64encode(hmac.new(KEY, body, hashlib.sha256).digest()).decode().rstrip("=")
    assert sign(body, KEY) == expected
    assert "=" not in sign(body, KEY)
    assert len(sign(body, KEY)) == 43


@pytest.mark.parametrize("key", [b"", b"k" * 64, b"a-key-longer-than-sha256-block-" * 4])
def test_signature_matches_the_standard_hmac_for_any_key_length(key: bytes) -> None:
    import base64
    import hashlib
    import hmac

    body = b'{"eventId":"e","eventType":"record.new"}'
    expected = base64.urlsafe_b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode().rstrip("=")
    assert sign(body, key) == expected
    assert verify(body, expected.encode(), key)


def test_verify_raw_padded_and_compact_forms() -> None:
    body = b'{ "b": [1, 2], "a": "\xc3\xa9" }'
    assert verify(body, sign(body, KEY).encode(), KEY)
    assert verify(body, (sign(body, KEY) + "=").encode(), KEY)
    compact = sign(b'{"b":[1,2],"a":"\xc3\xa9"}', KEY).encode()
    assert not verify(body, compact, KEY)  # the raw check knows nothing of the compact form
    match = verify_compact(body, compact, KEY, max_bytes=len(body))
    assert match is not None
    assert match.document == {"b": [1, 2], "a": "\u00e9"}
    assert verify_compact(body, compact, KEY, max_bytes=len(body) - 1) is None  # over the limit: not parsed
    assert verify_compact(body, compact, KEY, max_bytes=0) is None


@pytest.mark.parametrize("signature", [None, b"", b"garbage", b"\xff\xfe", b"A" * 43])
def test_verify_rejects_bad_signatures(signature: bytes | None) -> None:
    body = b'{"a": 1}'
    assert not verify(body, signature, KEY)
    assert verify_compact(body, signature, KEY, max_bytes=1000) is None


def test_verify_compact_form_of_a_too_deep_document_is_none_not_an_error() -> None:
    body = b"[ " + b"[" * 300 + b"]" * 300 + b" ]"
    assert verify_compact(body, b"x" * 43, KEY, max_bytes=10_000) is None
    assert verify_compact(b"{ not json", b"x" * 43, KEY, max_bytes=10_000) is None


@pytest.mark.parametrize(
    ("body", "may_differ"),
    [
        (b'{"a":"x y","b":[1,2],"c":{"d":null}}', False),  # spaces inside strings only
        (b'{"a": 1}', True),
        (b'{"a" :1}', True),
        (b'{"a":1 ,"b":2}', True),
        (b'{"a":1, "b":2}', True),
        (b'{ "a":1}', True),
        (b'{"a":1 }', True),
        (b"[ 1]", True),
        (b"[1 ]", True),
        (b'{"a":\n1}', True),
        (b'{"a":\t1}', True),
        (b'{"a":1}\r', True),
        (b' {"a":1}', True),
        (b'{"a":1} ', True),
        (b'{"a":"\\u00e9"}', True),
        (b'{"a":"\\/"}', True),
        (b'{"a":"\\n"}', False),
    ],
)
def test_may_differ_when_compacted(body: bytes, may_differ: bool) -> None:
    assert may_differ_when_compacted(body) is may_differ
    if not may_differ:  # then re-serialising gives the same bytes: the raw check already covered it
        assert orjson.dumps(orjson.loads(body)) == body


def test_verify_rejects_other_key_and_other_body() -> None:
    body = b'{"a":1}'
    assert not verify(body, sign(body, b"other").encode(), KEY)
    assert not verify(b'{"a":2}', sign(body, KEY).encode(), KEY)


def test_compact_match_gives_the_bytes_signed_not_the_bytes_sent() -> None:
    """Extra digits parse to the same double, so the compact form matches; what is kept must be that form."""
    sent = b'{"eventId": "e", "eventType": "x", "eventData": {"n": 100000.00000000000001}}'
    signed_form = b'{"eventId":"e","eventType":"x","eventData":{"n":100000.0}}'
    match = verify_compact(sent, sign(signed_form, KEY).encode(), KEY, max_bytes=len(sent))
    assert match is not None
    assert match.body == signed_form
    assert to_event(match.body, match.document, None).payload == signed_form.decode()


# -- envelope --------------------------------------------------------------------------------------
def _event(document: object, integration: str | None = "int") -> object:
    body = json.dumps(document).encode()
    return to_event(body, parse_json(body), integration)


def test_envelope_fields_and_numbers_as_text() -> None:
    event = _event({"eventId": 12, "eventType": "record.new", "syncRunId": "r", "recordId": 7})
    assert (event.event_id, event.event_type, event.sync_run_id, event.record_id, event.sync_job_id) == (  # type: ignore[attr-defined]
        "12",
        "record.new",
        "r",
        "7",
        None,
    )


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"eventId": "", "eventType": "x"}, "eventId is missing"),
        ({"eventId": "a", "eventType": None}, "eventType is missing"),
        ({"eventId": True, "eventType": "x"}, "eventId must be a string"),
        ({"eventId": "a", "eventType": "x", "syncRunId": ["r"]}, "syncRunId must be a string"),
        ({"eventId": "a" * (MAX_ID_CHARS + 1), "eventType": "x"}, "longer than"),
        ({"eventId": "a", "eventType": "x", "eventData": {"k\u0000": 1}}, "NUL"),
        ("just a string", "must be a JSON object"),
    ],
)
def test_envelope_errors(document: object, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        _event(document)


def test_execution_id_travels_with_the_event_and_is_checked_like_the_integration_id() -> None:
    body = b'{"eventId": "e", "eventType": "record.new"}'
    assert read_event(body, "int", "exec-1").execution_id == "exec-1"
    assert read_event(body, "int").execution_id is None
    with pytest.raises(EnvelopeError, match="X-Knit-Execution-Id"):
        read_event(body, "int", "x" * (MAX_ID_CHARS + 1))


def _both_parsers(body: bytes, integration: str | None) -> list[str | None]:
    """The integration of ``body`` as the fast path and the full parse read it (they must agree)."""
    return [read_event(body, integration).integration_id, to_event(body, parse_json(body), integration).integration_id]


@pytest.mark.parametrize(
    ("data", "header", "integration"),
    [
        ({"integrationId": "int-a"}, None, "int-a"),  # only the body names it: the body's
        ({"integrationId": "int-a"}, "int-a", "int-a"),
        ({"integrationId": 42}, None, "42"),
        ({"integrationId": ""}, "int-h", "int-h"),  # names none: the header's
        ({"integrationId": None}, "int-h", "int-h"),
        ({"info": {"integrationId": "nested"}}, "int-h", "int-h"),  # only eventData's own key counts
        (None, "int-h", "int-h"),
        ({}, None, None),
    ],
)
def test_the_integration_named_in_the_body_is_the_events(
    data: object, header: str | None, integration: str | None
) -> None:
    body = orjson.dumps({"eventId": "e", "eventType": "app.integration.activate", "eventData": data})
    assert _both_parsers(body, header) == [integration, integration]


def test_a_header_other_than_the_body_integration_is_refused_saying_both() -> None:
    body = b'{"eventId": "e", "eventType": "app.integration.activate", "eventData": {"integrationId": "int-a"}}'
    for parse in (lambda: read_event(body, "victim"), lambda: to_event(body, parse_json(body), "victim")):
        with pytest.raises(EnvelopeError, match=r"X-Knit-Integration-Id 'victim' does not match .* 'int-a'"):
            parse()


def test_header_ids_are_decoded_as_utf8_and_refused_when_not_clean_text() -> None:
    head = check_headers([(b"x-knit-integration-id", "int-é-Ω".encode()), (b"x-knit-execution-id", b"ex-1")], 100)
    assert isinstance(head, Head)
    assert (head.integration_id, head.execution_id) == ("int-é-Ω", "ex-1")
    body = b'{"eventId": "e", "eventType": "record.new"}'
    assert read_event(body, head.integration_id, head.execution_id).integration_id == "int-é-Ω"
    for raw, reason in [(b"int-\xff", "not valid UTF-8"), (b"int\x1b[2J", "control character")]:
        head = check_headers([(b"x-knit-integration-id", raw)], 100)
        assert isinstance(head, Head)
        with pytest.raises(EnvelopeError, match=reason):
            read_event(body, head.integration_id)
        head = check_headers([(b"x-knit-execution-id", raw)], 100)
        assert isinstance(head, Head)
        with pytest.raises(EnvelopeError, match="X-Knit-Execution-Id"):
            read_event(body, None, head.execution_id)


@pytest.mark.parametrize("depth", [997, 998, 1_000, 1_023, 1_024, 2_000, 200_000])
def test_any_nesting_depth_is_an_event_or_a_reason_never_an_exception(depth: int) -> None:
    """msgspec raises RecursionError from about 1,000 levels; orjson reads 1,024 (the envelope is one of
    them). The dead-letter side (ids, headers) must survive the same bodies."""
    body = b'{"eventId": "deep", "eventType": "x", "eventData": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
    if depth < 1_024:
        assert read_event(body, "int").event_id == "deep"
    else:
        with pytest.raises(EnvelopeError, match="depth limit exceeded"):
            read_event(body, "int")
    assert read_ids(body) == ("deep", "x", None, None)
    letter = DeadLetter(body, safe_headers([(b"x-knit-integration-id", b"int")]), "reason", "int")
    assert (letter.event_id, letter.headers) == ("deep", {"x-knit-integration-id": "int"})


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        (b'{"eventType": "record.new", "syncJobId": "sj", "syncRunId": "sr"}', (None, "record.new", "sj", "sr")),
        (b'{"eventId": "", "eventType": "x", "syncJobId": "", "syncRunId": 12}', (None, "x", None, "12")),
        (
            b'{"eventId": ["e"], "eventType": true, "syncRunId": "%s"}' % (b"r" * (MAX_ID_CHARS + 1)),
            (None, None, None, None),
        ),
        (b'[{"eventId": "e"}]', (None, None, None, None)),
        # Truncated: each complete "key": "string" pair is read, a cut one is not.
        (
            b'{"eventId": "e\\u00e9", "eventType":"record.new", "eventData": {"a": 1}, "syncJobId": "sj", '
            b'"syncRunId": "s',
            ("e\u00e9", "record.new", "sj", None),
        ),
        (
            b'{"eventId": "e1", "eventData": {"x": "\\"syncRunId\\": \\"fake\\""}, "syncRunId": "sr"',
            ("e1", None, None, "sr"),
        ),
        (b"\xff\xfe not json", (None, None, None, None)),
    ],
)
def test_read_ids_of_unusable_bodies(body: bytes, ids: tuple[str | None, ...]) -> None:
    assert read_ids(body) == ids


def test_escaped_backslash_u0000_is_not_a_nul() -> None:
    event = _event({"eventId": "a", "eventType": "x", "eventData": "\\u0000"})
    assert event.event_id == "a"  # type: ignore[attr-defined]


def test_safe_headers_drop_credentials_and_join_repeats() -> None:
    headers = safe_headers(
        [
            (b"Authorization", b"Bearer s"),
            (b"x-api-key", b"s"),
            (b"cookie", b"c"),
            (b"x-webhook-secret", b"s"),
            (b"x-knit-signature", b"sig"),
            (b"via", b"a"),
            (b"via", b"b"),
        ]
    )
    assert headers == {"x-knit-signature": "sig", "via": "a, b"}


def test_safe_headers_are_utf8_with_undecodable_bytes_and_controls_escaped() -> None:
    # Stored as jsonb: a NUL would be refused, and a Latin-1 reading would garble a UTF-8 id.
    headers = safe_headers(
        [(b"x-knit-integration-id", "int-é".encode()), (b"x-odd", b"a\xffb\x00c\x1b"), (b"x-\xc3", b"v")]
    )
    assert headers == {"x-knit-integration-id": "int-é", "x-odd": "a\\xffb\\x00c\\x1b", "x-\\xc3": "v"}


# -- settings --------------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "KNIT_WEBHOOK_SECRET",
        "KNIT_WEBHOOK_UNSIGNED",
        "KNIT_WEBHOOK_DATABASE_URL",
        "KNIT_WEBHOOK_BATCH_SIZE",
        "KNIT_WEBHOOK_COMPACT_SIGNATURE_MAX_BYTES",
        "AIRFLOW_CONN_KNIT_DEFAULT",
        "AIRFLOW_CONN_KNIT_LANDING_DEFAULT",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_settings_from_airflow_connections(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIRFLOW_CONN_KNIT_LANDING_DEFAULT", "postgres://u:p%40ss@db.example:5433/landing")
    clean_env.setenv("AIRFLOW_CONN_KNIT_DEFAULT", json.dumps({"conn_type": "knit", "password": "api-key"}))
    settings = resolve_settings()
    assert settings.database_url == "postgresql://u:p%40ss@db.example:5433/landing"
    assert settings.secret == b"api-key"
    assert "api-key" not in repr(settings)


def test_webhook_secret_extra_wins_over_api_key(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(
        "AIRFLOW_CONN_KNIT_DEFAULT",
        json.dumps({"conn_type": "knit", "password": "api-key", "extra": {"webhook_secret": "hook-key"}}),
    )
    assert resolve_settings(database_url="postgresql://x/y").secret == b"hook-key"


def test_flags_and_environment_override_connections(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIRFLOW_CONN_KNIT_DEFAULT", json.dumps({"conn_type": "knit", "password": "api-key"}))
    clean_env.setenv("KNIT_WEBHOOK_SECRET", "env-key")
    clean_env.setenv("KNIT_WEBHOOK_BATCH_SIZE", "77")
    settings = resolve_settings(database_url="postgresql://x/y", batch_size=None, queue_size=5)
    assert (settings.secret, settings.batch_size, settings.queue_size) == (b"env-key", 77, 5)
    assert resolve_settings(database_url="postgresql://x/y", secret="flag-key").secret == b"flag-key"


def test_no_key_refuses_unless_unsigned(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="refuses to start"):
        resolve_settings(database_url="postgresql://x/y")
    assert resolve_settings(database_url="postgresql://x/y", unsigned=True).secret is None
    clean_env.setenv("KNIT_WEBHOOK_UNSIGNED", "true")
    assert resolve_settings(database_url="postgresql://x/y").unsigned


def test_missing_landing_connection_says_what_to_set(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="AIRFLOW_CONN_KNIT_LANDING_DEFAULT"):
        resolve_settings(secret="k")


@pytest.mark.parametrize("field", ["batch_size", "queue_size", "writers", "max_body_bytes"])
def test_settings_reject_non_positive_numbers(field: str) -> None:
    with pytest.raises(SettingsError, match=field):
        ReceiverSettings(database_url="postgresql://x/y", secret=b"k", **{field: 0})


def test_compact_signature_limit_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    assert resolve_settings(database_url="postgresql://x/y", secret="k").compact_signature_max_bytes == 256 * 1024
    clean_env.setenv("KNIT_WEBHOOK_COMPACT_SIGNATURE_MAX_BYTES", "0")
    assert resolve_settings(database_url="postgresql://x/y", secret="k").compact_signature_max_bytes == 0
    with pytest.raises(SettingsError, match="compact_signature_max_bytes must not be negative"):
        ReceiverSettings(database_url="postgresql://x/y", secret=b"k", compact_signature_max_bytes=-1)


# -- error classification ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (asyncpg.exceptions.DeadlockDetectedError(""), Failure.RETRY),
        (asyncpg.exceptions.SerializationError(""), Failure.RETRY),
        (asyncpg.exceptions.NumericValueOutOfRangeError(""), Failure.DATA),
        (asyncpg.exceptions.InvalidTextRepresentationError(""), Failure.DATA),
        (asyncpg.exceptions.ProgramLimitExceededError(""), Failure.DATA),
        (asyncpg.exceptions.AdminShutdownError(""), Failure.CONNECTION),
        (asyncpg.exceptions.CannotConnectNowError(""), Failure.CONNECTION),
        (asyncpg.exceptions.ConnectionDoesNotExistError(""), Failure.CONNECTION),
        (ConnectionRefusedError(), Failure.CONNECTION),
        (asyncio.TimeoutError(), Failure.CONNECTION),
        (asyncpg.exceptions.UndefinedTableError(""), Failure.SERVER),
        (asyncpg.exceptions.DiskFullError(""), Failure.SERVER),
    ],
)
def test_classify(error: BaseException, failure: Failure) -> None:
    assert classify(error) is failure
