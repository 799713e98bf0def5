"""Property: whatever a client sends, the receiver answers 200 (authentic), 401 or 413, never a 500 nor a 400."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from receiver_helpers import SECRET, InProcess, settings_for

from knit_provider.webhook.signature import may_differ_when_compacted, sign

_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_json_leaf = (
    st.none() | st.booleans() | _int64 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_id = st.one_of(
    st.text(max_size=30), _int64, st.none(), st.lists(_int64, max_size=2), st.text(min_size=500, max_size=600)
)
_envelopes = st.fixed_dictionaries(
    {"eventId": _id, "eventType": _id},
    optional={"eventData": _json, "syncRunId": _id, "syncJobId": _id, "recordId": _id, "syncType": _id},
).map(lambda d: orjson.dumps(d))
# Nesting around orjson's limits (255 to write, 1024 to read), with and without a NUL inside.
_deep = st.tuples(st.integers(min_value=200, max_value=1100), st.sampled_from([b"[", b'["\\u0000",'])).map(
    lambda spec: b'{"eventId":"deep","eventType":"x","eventData":' + spec[1] * spec[0] + b"1" + b"]" * spec[0] + b"}"
)
_bodies = st.one_of(st.binary(max_size=300), _json.map(orjson.dumps), _envelopes, _deep)
# As a header value arrives over HTTP: without surrounding whitespace (a client may not send it).
_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)


@pytest.fixture(scope="module", params=["asgi", "raw"])
def harness(landing_url: str, request: pytest.FixtureRequest) -> Iterator[InProcess]:
    app = InProcess(settings_for(landing_url, max_body_bytes=12_000), request.param)
    yield app
    app.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=_bodies,
    signature=st.sampled_from(["valid", "compact", "missing", "garbage"]),
    integration=st.none() | _header_text,
    content_type=st.none() | _header_text,
)
def test_fuzzed_requests_never_get_a_500(
    harness: InProcess, body: bytes, signature: str, integration: str | None, content_type: str | None
) -> None:
    headers: dict[str, str] = {}
    signed_bytes = body
    if signature == "valid":
        headers["X-Knit-Signature"] = sign(body, SECRET)
    elif signature == "compact":
        with contextlib.suppress(orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON: sign the raw bytes
            signed_bytes = orjson.dumps(orjson.loads(body))
        headers["X-Knit-Signature"] = sign(signed_bytes, SECRET)
    elif signature == "garbage":
        headers["X-Knit-Signature"] = "x" * 43
    if integration is not None:
        headers["X-Knit-Integration-Id"] = integration
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = harness.post(body, headers)
    # A signed body is kept whatever it holds (an event or a dead letter): never bounced.
    expected: set[Any] = {200} if signature in ("valid", "compact") else {401}
    if signed_bytes != body and not may_differ_when_compacted(body):
        expected = {401}  # only a number's spelling differs (-0, 1E2): a body without whitespace counts as sent
    if len(body) > 12_000:
        expected = {413}
    assert response.status_code in expected, (response.status_code, response.text)
