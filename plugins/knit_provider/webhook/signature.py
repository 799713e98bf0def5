"""Verify Knit's ``X-Knit-Signature``: base64url (no padding) of HMAC-SHA256 over the body.

Knit's pages disagree on which bytes are signed: one sample signs the raw body, another the
body re-serialised as compact JSON (``JSON.stringify``). The raw bytes are checked first; the
compact form only when they do not match, and only for a body that parses. When only the compact
form matches, the compact form is what is kept: the raw body may hold what the signature does not
cover (a duplicate key, a number spelled with more digits than a double keeps).

The compact form costs a parse and a re-encode, and a forger chooses the body: so it is tried only
for bodies up to a size limit (Knit's are a few kB) and only when the body could differ from its
compact form at all (whitespace between tokens, or an escape the encoder would write otherwise). A
wrong signature thus costs one HMAC over the bytes read, plus at most one bounded parse.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import re
from typing import Any, NamedTuple

import orjson

SIGNATURE_HEADER = b"x-knit-signature"
_BLOCK = 64  # SHA-256's block size in bytes
_URLSAFE = bytes.maketrans(b"+/", b"-_")
# Whitespace between JSON tokens always touches a structural character (or is a tab, CR or LF), so a
# body matching none of these has none; "\u" and "\/" are escapes orjson writes differently. A match
# inside a string only costs a needless try; no match means the compact form is the body itself.
_NOT_COMPACT = re.compile(rb"[\t\r\n]|[,:{\[] | [,:}\]]|\\[u/]")


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
    signer = Signer(secret)
    signer.update(body)
    return signer.expected()


class Signer:
    """The HMAC of a body fed piece by piece as it arrives: no piece is hashed twice or joined first.

    The standalone server hashes each piece of a body as it is read, so a forged 5 MiB body is
    refused without its pieces ever being joined, and its hashing never holds the event loop for
    longer than one read.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        inner, self._outer = _keyed(secret)
        self._inner = inner.copy()

    def update(self, piece: bytes) -> None:
        self._inner.update(piece)

    def expected(self) -> bytes:
        """The signature of what was fed so far, as Knit writes it (base64url without padding)."""
        outer = self._outer.copy()
        outer.update(self._inner.digest())
        return binascii.b2a_base64(outer.digest(), newline=False).translate(_URLSAFE).rstrip(b"=")

    def matches(self, signature: bytes | None) -> bool:
        """Return whether ``signature`` (the header value as received) signs what was fed."""
        return bool(signature) and hmac.compare_digest(_given(signature or b""), self.expected())


def compact_json(document: Any) -> bytes:
    """Serialise like ``JSON.stringify``: no whitespace, non-ASCII kept as UTF-8, key order kept."""
    return orjson.dumps(document)


def _given(signature: bytes) -> bytes:
    return signature.strip().rstrip(b"=")


def verify(body: bytes, signature: bytes | None, secret: bytes) -> bool:
    """Return whether ``signature`` signs the raw ``body``.

    :param signature: the header value as received (bytes); padding and surrounding spaces are ignored.
    """
    signer = Signer(secret)
    signer.update(body)
    return signer.matches(signature)


def may_differ_when_compacted(body: bytes) -> bool:
    """Return whether ``body`` may differ from its compact re-serialisation (else that form is the body)."""
    return _NOT_COMPACT.search(body) is not None or body[:1].isspace() or body[-1:].isspace()


class Compact(NamedTuple):
    """The compact form of a body matched its signature: ``body`` is that form, the bytes signed (to keep
    instead of the raw body), and ``document`` the parsed body, to reuse."""

    body: bytes
    document: Any


def verify_compact(body: bytes, signature: bytes | None, secret: bytes, max_bytes: int) -> Compact | None:
    """Return the compact form and the parsed body when ``signature`` signs that form, else ``None``.

    Call it only after :func:`verify` failed. Nothing is parsed for a body over ``max_bytes``
    (``0``: never) or one that is already compact (its compact form would be the bytes just checked).
    """
    if not signature or len(body) > max_bytes or not may_differ_when_compacted(body):
        return None
    try:
        document = orjson.loads(body)
        compact = compact_json(document)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON, or nested deeper than orjson writes
        return None
    return Compact(compact, document) if hmac.compare_digest(_given(signature), _expected(compact, secret)) else None
