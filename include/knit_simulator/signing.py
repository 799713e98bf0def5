"""Knit's webhook signature: base64url, without padding, of HMAC-SHA256 over the raw body."""

from __future__ import annotations

import base64
import hmac


def sign(body: bytes, key: bytes) -> bytes:
    """The ``X-Knit-Signature`` value for ``body`` signed with the API key ``key``."""
    return base64.urlsafe_b64encode(hmac.digest(key, body, "sha256")).rstrip(b"=")
