"""Verify Knit's ``X-Knit-Signature``: base64url (no padding) of HMAC-SHA256 over the body.

Knit's pages disagree on which bytes are signed: one sample signs the raw body, another the
body re-serialised as compact JSON (``JSON.stringify``). The raw bytes are checked first; the
compact form only when they do not match, and only for a body that parses.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

import orjson

SIGNATURE_HEADER = b"x-knit-signature"


def sign(body: bytes, secret: bytes) -> str:
    """Return the signature Knit sends for ``body`` (used by the simulator, tests and benchmarks)."""
    return _expected(body, secret).decode("ascii")


def _expected(body: bytes, secret: bytes) -> bytes:
    # hmac.digest is the one-shot C path: several times cheaper per call than hmac.new(...).digest().
    return base64.urlsafe_b64encode(hmac.digest(secret, body, "sha256")).rstrip(b"=")


def compact_json(document: Any) -> bytes:
    """Serialise like ``JSON.stringify``: no whitespace, non-ASCII kept as UTF-8, key order kept."""
    return orjson.dumps(document)


def verify(body: bytes, signature: bytes | None, secret: bytes, document: Any = None) -> bool:
    """Return whether ``signature`` signs ``body`` (raw) or, given the parsed ``document``, its compact form.

    :param signature: the header value as received (bytes); padding and surrounding spaces are ignored.
    :param document: the parsed body, or ``None`` to check the raw bytes only.
    """
    if not signature:
        return False
    given = signature.strip().rstrip(b"=")
    if hmac.compare_digest(given, _expected(body, secret)):
        return True
    if document is None:
        return False
    try:
        compact = compact_json(document)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: it cannot be the signed form
        return False
    return hmac.compare_digest(given, _expected(compact, secret))
