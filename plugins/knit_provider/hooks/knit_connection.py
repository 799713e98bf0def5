"""Read a ``knit`` Airflow connection once into a checked, typed value whose repr hides the secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from knit_provider.exceptions import KnitConfigurationError
from knit_provider.hooks.responses import base_url
from knit_provider.hooks.retry import RetryPolicy
from knit_provider.inputs import optional_text

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class KnitConnection:
    """A ``knit`` connection, read once and checked; the secrets stay out of ``repr``."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    webhook_secret: str | None = field(repr=False)
    integration_id: str | None
    timeout: float
    policy: RetryPolicy
    dashboard_url: str | None


def read_knit_connection(
    conn: Any,
    conn_id: str,
    *,
    timeout: float | None = None,
    max_attempts: int | None = None,
    max_retry_seconds: float | None = None,
) -> KnitConnection:
    """Check an Airflow ``Connection`` and resolve each tunable: argument, else extra, else default."""
    extras = conn.extra_dejson or {}
    api_key = (conn.password or "").strip()
    if not api_key:
        raise KnitConfigurationError(f"Connection {conn_id!r} has no API key: set its password to your Knit API key.")
    webhook_secret = optional_text(extras.get("webhook_secret"))
    _mask(api_key, webhook_secret)
    resolved_timeout = _setting(timeout, extras, "timeout", float, DEFAULT_TIMEOUT, conn_id)
    if resolved_timeout <= 0:
        raise KnitConfigurationError(f"timeout must be a positive number of seconds, got {resolved_timeout}.")
    defaults = RetryPolicy()
    policy = RetryPolicy(
        max_attempts=_setting(max_attempts, extras, "max_attempts", int, defaults.max_attempts, conn_id),
        max_elapsed=_setting(max_retry_seconds, extras, "max_retry_seconds", float, defaults.max_elapsed, conn_id),
    )
    return KnitConnection(
        conn_id=conn_id,
        base_url=base_url(conn.host, conn.schema, conn.port, conn_id),
        api_key=api_key,
        webhook_secret=webhook_secret,
        integration_id=optional_text(extras.get("integration_id")),
        timeout=resolved_timeout,
        policy=policy,
        dashboard_url=optional_text(extras.get("dashboard_url")),
    )


def _setting(argument: Any, extras: dict[str, Any], key: str, kind: type[Any], default: Any, conn_id: str) -> Any:
    """Resolve one tunable: the hook argument, else the connection extra, else the default."""
    if argument is not None:
        return kind(argument)
    raw = extras.get(key)
    if optional_text(raw) is None:
        return default
    try:
        return kind(raw)
    except (TypeError, ValueError) as e:
        raise KnitConfigurationError(
            f"Extra {key!r} of connection {conn_id!r} must be a {kind.__name__}, got {raw!r}."
        ) from e


def _mask(*secrets: str | None) -> None:
    """Register secrets with Airflow's log masker, so even a stray log line shows ``***``."""
    from airflow.sdk.log import mask_secret

    for secret in secrets:
        if secret:
            mask_secret(secret)
