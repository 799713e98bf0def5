"""Units of the receiver that need no server: signature, envelope, settings, error classification."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import orjson
import pytest

from knit_provider.landing.store import Failure, classify
from knit_provider.webhook.envelope import MAX_ID_CHARS, EnvelopeError, parse_json, safe_headers, to_event
from knit_provider.webhook.settings import ReceiverSettings, SettingsError, resolve_settings
from knit_provider.webhook.signature import sign, verify

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
    document = orjson.loads(body)
    assert verify(body, sign(body, KEY).encode(), KEY)
    assert verify(body, (sign(body, KEY) + "=").encode(), KEY)
    compact = sign(b'{"b":[1,2],"a":"\xc3\xa9"}', KEY).encode()
    assert not verify(body, compact, KEY)  # the compact form needs the parsed document
    assert verify(body, compact, KEY, document)


@pytest.mark.parametrize("signature", [None, b"", b"garbage", b"\xff\xfe", b"A" * 43])
def test_verify_rejects_bad_signatures(signature: bytes | None) -> None:
    body = b'{"a":1}'
    assert not verify(body, signature, KEY, orjson.loads(body))


def test_verify_compact_form_of_a_too_deep_document_is_false_not_an_error() -> None:
    body = b"[" * 300 + b"]" * 300
    assert not verify(body, b"x" * 43, KEY, orjson.loads(body))


def test_verify_rejects_other_key_and_other_body() -> None:
    body = b'{"a":1}'
    assert not verify(body, sign(body, b"other").encode(), KEY)
    assert not verify(b'{"a":2}', sign(body, KEY).encode(), KEY)


# -- envelope --------------------------------------------------------------------------------------
def _event(document: object, integration: str | None = "int") -> object:
    body = json.dumps(document).encode()
    return to_event(body, parse_json(body), integration)


def test_envelope_fields_and_numbers_as_text() -> None:
    event = _event({"eventId": 12, "eventType": "record.new", "syncRunId": "r", "recordId": 7})
    assert (event.event_id, event.event_type, event.sync_run_id, event.record_id, event.sync_job_id) == (  # type: ignore[attr-defined]
        "12", "record.new", "r", "7", None)


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


def test_escaped_backslash_u0000_is_not_a_nul() -> None:
    event = _event({"eventId": "a", "eventType": "x", "eventData": "\\u0000"})
    assert event.event_id == "a"  # type: ignore[attr-defined]


def test_safe_headers_drop_credentials_and_join_repeats() -> None:
    headers = safe_headers([(b"Authorization", b"Bearer s"), (b"x-api-key", b"s"), (b"cookie", b"c"),
                            (b"x-webhook-secret", b"s"), (b"x-knit-signature", b"sig"), (b"via", b"a"),
                            (b"via", b"b")])
    assert headers == {"x-knit-signature": "sig", "via": "a, b"}


# -- settings --------------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("KNIT_WEBHOOK_SECRET", "KNIT_WEBHOOK_UNSIGNED", "KNIT_WEBHOOK_DATABASE_URL", "KNIT_WEBHOOK_BATCH_SIZE",
                 "AIRFLOW_CONN_KNIT_DEFAULT", "AIRFLOW_CONN_KNIT_LANDING_DEFAULT"):
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
    clean_env.setenv("AIRFLOW_CONN_KNIT_DEFAULT", json.dumps(
        {"conn_type": "knit", "password": "api-key", "extra": {"webhook_secret": "hook-key"}}))
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
