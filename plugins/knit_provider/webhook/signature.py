"""Verify Knit's ``X-Knit-Signature``: base64url (no padding) of HMAC-SHA256 over the body.

Knit's pages disagree on which bytes are signed: one sample signs the raw body, another the
body re-serialised as compact JSON (``JSON.stringify``). The raw bytes are checked first; the
compact form only when they do not match, and only for a body that parses.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
from typing import Any

import orjson

SIGNATURE_HEADER = b"x-knit-signature"
_BLOCK = 64  # SHA-256's block size in bytes
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def sign(body: bytes, secret: bytes) -> str:
    """Return the signature Knit sends for ``body`` (used by the simulator, tests and benchmarks)."""
    return _expected(body, secret).decode("ascii")


@functools.lru_cache(maxsize=16)
def _keyed(secret: bytes) -> tuple[Any, Any]:
    """SHA-256 states with the HMAC key's inner and outer pads absorbed (RFC 2104), made once per key."""
    key = (hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret).ljust(_BLOCK, b"\0")
    return (hashlib.sha256(bytes(byte ^ 0x36 for byte in key)), hashlib.sha256(bytes(byte ^ 0x5C for byte in key)))


def _expected(body: bytes, secret: bytes) -> bytes:
    # HMAC from copies of pre-keyed states: cheaper per call than OpenSSL's one-shot HMAC, which sets
    # up the key and looks up the digest every time.
    inner_keyed, outer_keyed = _keyed(secret)
    inner = inner_keyed.copy()
    inner.update(body)
    outer = outer_keyed.copy()
    outer.update(inner.digest())
    return binascii.b2a_base64(outer.digest(), newline=False).translate(_URLSAFE).rstrip(b"=")


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
