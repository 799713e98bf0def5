"""Settings of the webhook receiver, resolved once from Airflow connections, the environment and flags.

Precedence, highest first: explicit values (CLI flags), ``KNIT_WEBHOOK_*`` environment variables,
the Airflow connections (``knit_landing_default`` for the database, ``knit_default`` for the
signing key), then the defaults below. Connections resolve through ``BaseHook.get_connection``,
so ``AIRFLOW_CONN_*`` variables work without an Airflow metadata database.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from typing import Any

from knit_provider.settings import DEFAULT_KNIT_CONN_ID, DEFAULT_LANDING_CONN_ID, Schemas

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_BATCH_SIZE = 500
DEFAULT_BATCH_WAIT_MS = 0.0
DEFAULT_QUEUE_SIZE = 10_000
DEFAULT_WRITERS = 2
# Bodies up to this size whose raw bytes fail the signature are also checked in compact form (a parse
# and a re-encode on the event loop): Knit's application bodies are a few kB, a forger's may be 5 MiB.
DEFAULT_COMPACT_SIGNATURE_MAX_BYTES = 256 * 1024
# Limits of the standalone server, before any body is read (the mounted app leaves them to the proxy).
DEFAULT_MAX_URL_BYTES = 8 * 1024
DEFAULT_MAX_HEADER_BYTES = 8 * 1024
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 100
DEFAULT_HEAD_TIMEOUT_SECONDS = 30.0
DEFAULT_BODY_TIMEOUT_SECONDS = 60.0
DEFAULT_IDLE_TIMEOUT_SECONDS = 15.0
# Below the usual 1024 open files per process, leaving room for database connections and the log.
DEFAULT_MAX_CONNECTIONS = 1000
# Of those, per client address: one address cannot take them all (Knit delivers from a few addresses,
# tens of connections each). Behind a proxy every connection comes from the proxy: raise it there.
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256
# Bytes of request bodies a process holds while reading them: Knit's bodies are a few kB, so only many
# large bodies at once reach it (each declared Content-Length is reserved when its head is complete).
DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
# Bodies over LARGE_BODY_BYTES read at once per process (others wait), each one read per turn of the event
# loop: however many forgers send large bodies, a small delivery waits for at most this many reads.
LARGE_BODY_BYTES = 256 * 1024
DEFAULT_MAX_LARGE_BODIES = 4

_TRUE = {"1", "true", "yes", "on"}


class SettingsError(ValueError):
    """The receiver cannot start as configured; the message says what to set."""


@dataclass(frozen=True)
class ReceiverSettings:
    """Everything the receiver needs; ``secret`` is ``None`` only in explicit unsigned mode."""

    database_url: str
    secret: bytes | None = field(repr=False)
    unsigned: bool = False
    unsigned_any_address: bool = False  # unsigned mode also off loopback (see check_listen_address)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    queue_size: int = DEFAULT_QUEUE_SIZE
    writers: int = DEFAULT_WRITERS
    retry_after_seconds: int = 5
    summary_interval_seconds: float = 60.0
    compact_signature_max_bytes: int = DEFAULT_COMPACT_SIGNATURE_MAX_BYTES  # 0: raw bytes only
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    head_timeout_seconds: float = DEFAULT_HEAD_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES
    max_large_bodies: int = DEFAULT_MAX_LARGE_BODIES
    metrics_port: int | None = None  # standalone only: Prometheus metrics on their own listener
    metrics_host: str = "127.0.0.1"
    schemas: Schemas = field(default_factory=Schemas.from_env)

    def __post_init__(self) -> None:
        if self.secret is None and not self.unsigned:
            raise SettingsError(
                "No webhook signing key is configured, so the receiver refuses to start: set the API key "
                f"(password) or extra 'webhook_secret' of the Airflow connection {DEFAULT_KNIT_CONN_ID!r} "
                "(e.g. AIRFLOW_CONN_KNIT_DEFAULT), or KNIT_WEBHOOK_SECRET, or pass --secret. "
                "For a local demo only, --unsigned (KNIT_WEBHOOK_UNSIGNED=true) accepts unsigned bodies."
            )
        if self.unsigned and self.secret is not None:
            raise SettingsError("unsigned mode and a signing key are both given: remove one of them")
        for name in (
            "max_body_bytes",
            "batch_size",
            "queue_size",
            "writers",
            "max_url_bytes",
            "max_header_bytes",
            "max_head_bytes",
            "max_headers",
            "max_connections",
            "max_connections_per_address",
            "max_large_bodies",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("head_timeout_seconds", "body_timeout_seconds", "idle_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be more than 0 seconds, got {getattr(self, name)}")
        for name in ("max_url_bytes", "max_header_bytes"):
            if getattr(self, name) > self.max_head_bytes:
                raise SettingsError(
                    f"{name} ({getattr(self, name)}) must not exceed max_head_bytes "
                    f"({self.max_head_bytes}), which bounds the whole request head"
                )
        if self.max_buffered_bytes < self.max_body_bytes:
            raise SettingsError(
                f"max_buffered_bytes ({self.max_buffered_bytes}) must be at least max_body_bytes "
                f"({self.max_body_bytes}), or a body of the largest size allowed could never be "
                "read: raise KNIT_WEBHOOK_MAX_BUFFERED_BYTES (--max-buffered-bytes) with it"
            )
        if self.body_timeout_seconds < self.head_timeout_seconds:
            raise SettingsError(
                f"body_timeout_seconds ({self.body_timeout_seconds}) must be at least "
                f"head_timeout_seconds ({self.head_timeout_seconds}): both count from the "
                "request's first byte"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise SettingsError(f"metrics_port must be a TCP port (0-65535), got {self.metrics_port}")
        if self.batch_wait_ms < 0:
            raise SettingsError(f"batch_wait_ms must not be negative, got {self.batch_wait_ms}")
        if self.compact_signature_max_bytes < 0:
            raise SettingsError(
                f"compact_signature_max_bytes must not be negative (0 turns the compact form "
                f"off), got {self.compact_signature_max_bytes}"
            )

    def check_listen_address(self, host: str | None) -> None:
        """Refuse unsigned mode where strangers may reach it: off loopback, unless explicitly allowed.

        :param host: the address the receiver listens on; ``None`` when mounted in Airflow's API
            server, whose address is Airflow's to choose (so unsigned mode needs the explicit flag).
        """
        if not self.unsigned or self.unsigned_any_address or (host is not None and _is_loopback(host)):
            return
        where = "in Airflow's API server, whose address is Airflow's" if host is None else f"on {host!r}"
        raise SettingsError(
            f"Unsigned mode accepts a body from anyone who can connect, so it runs only on a loopback "
            f"address (127.0.0.1, ::1, localhost), and this receiver would listen {where}. Listen on "
            "127.0.0.1 (--host), or, only if every client that can reach it is trusted, also set "
            "KNIT_WEBHOOK_UNSIGNED_ANY_ADDRESS=true (--unsigned-on-any-address)."
        )

    def with_overrides(self, **values: Any) -> ReceiverSettings:
        """Return a copy with the given non-``None`` values replaced (CLI flags)."""
        return replace(self, **{key: value for key, value in values.items() if value is not None})


def webhook_secret(knit_conn_id: str) -> str | None:
    """Return the signing key of the ``knit`` connection (extra ``webhook_secret``, else the API key).

    ``None`` when the connection is missing or holds no key: the caller refuses to start.
    """
    from airflow.exceptions import AirflowNotFoundException

    from knit_provider.exceptions import KnitConfigurationError
    from knit_provider.hooks.knit import KnitHook

    try:
        return KnitHook(knit_conn_id=knit_conn_id).get_webhook_secret()
    except (AirflowNotFoundException, KnitConfigurationError):
        return None


def _landing_url(conn_id: str) -> str:
    """The landing database's URL from its Airflow connection, as every other landing client reads it."""
    from airflow.exceptions import AirflowNotFoundException

    from knit_provider.hooks.landing import KnitLandingHook

    try:
        return KnitLandingHook(conn_id).dsn()
    except AirflowNotFoundException:
        raise SettingsError(
            f"The Airflow connection {conn_id!r} (the landing database) is not defined: set "
            f"AIRFLOW_CONN_{conn_id.upper()}='postgresql://user:pass@host:5432/db' or pass --database-url."
        ) from None
    except ValueError as exc:  # no host, or an extra the drivers cannot share
        raise SettingsError(str(exc)) from exc


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: whatever it resolves to, it is not known to be loopback
        return False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _env_number(name: str, kind: type[int] | type[float]) -> int | float | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def resolve_settings(
    *,
    database_url: str | None = None,
    secret: str | None = None,
    unsigned: bool | None = None,
    unsigned_any_address: bool | None = None,
    landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
    knit_conn_id: str = DEFAULT_KNIT_CONN_ID,
    landing_schema: str | None = None,
    **overrides: Any,
) -> ReceiverSettings:
    """Build the settings from flags, then ``KNIT_WEBHOOK_*`` variables, then the Airflow connections."""
    unsigned = unsigned or _env_flag("KNIT_WEBHOOK_UNSIGNED")
    database_url = database_url or os.environ.get("KNIT_WEBHOOK_DATABASE_URL")
    if not database_url:
        database_url = _landing_url(landing_conn_id)
    env_secret = os.environ.get("KNIT_WEBHOOK_SECRET") or None
    source = "--secret" if secret else "KNIT_WEBHOOK_SECRET" if env_secret else f"the connection {knit_conn_id!r}"
    secret = secret or env_secret or webhook_secret(knit_conn_id)
    if unsigned and secret:
        # Never let a leftover flag turn authentication off while a key is configured.
        raise SettingsError(
            f"Unsigned mode (--unsigned, KNIT_WEBHOOK_UNSIGNED) and a signing key ({source}) are both "
            "configured, so the receiver refuses to start rather than ignore the key: remove "
            "KNIT_WEBHOOK_UNSIGNED (or --unsigned) to verify signatures, or, for a local demo, remove the key."
        )
    env = {
        "max_body_bytes": _env_number("KNIT_WEBHOOK_MAX_BODY_BYTES", int),
        "batch_size": _env_number("KNIT_WEBHOOK_BATCH_SIZE", int),
        "batch_wait_ms": _env_number("KNIT_WEBHOOK_BATCH_WAIT_MS", float),
        "queue_size": _env_number("KNIT_WEBHOOK_QUEUE_SIZE", int),
        "writers": _env_number("KNIT_WEBHOOK_WRITERS", int),
        "summary_interval_seconds": _env_number("KNIT_WEBHOOK_SUMMARY_INTERVAL_SECONDS", float),
        "compact_signature_max_bytes": _env_number("KNIT_WEBHOOK_COMPACT_SIGNATURE_MAX_BYTES", int),
        "max_url_bytes": _env_number("KNIT_WEBHOOK_MAX_URL_BYTES", int),
        "max_header_bytes": _env_number("KNIT_WEBHOOK_MAX_HEADER_BYTES", int),
        "max_head_bytes": _env_number("KNIT_WEBHOOK_MAX_HEAD_BYTES", int),
        "max_headers": _env_number("KNIT_WEBHOOK_MAX_HEADERS", int),
        "head_timeout_seconds": _env_number("KNIT_WEBHOOK_HEAD_TIMEOUT_SECONDS", float),
        "body_timeout_seconds": _env_number("KNIT_WEBHOOK_BODY_TIMEOUT_SECONDS", float),
        "idle_timeout_seconds": _env_number("KNIT_WEBHOOK_IDLE_TIMEOUT_SECONDS", float),
        "max_connections": _env_number("KNIT_WEBHOOK_MAX_CONNECTIONS", int),
        "max_connections_per_address": _env_number("KNIT_WEBHOOK_MAX_CONNECTIONS_PER_ADDRESS", int),
        "max_buffered_bytes": _env_number("KNIT_WEBHOOK_MAX_BUFFERED_BYTES", int),
        "max_large_bodies": _env_number("KNIT_WEBHOOK_MAX_LARGE_BODIES", int),
        "metrics_port": _env_number("KNIT_WEBHOOK_METRICS_PORT", int),
        "metrics_host": os.environ.get("KNIT_WEBHOOK_METRICS_HOST") or None,
    }
    values: dict[str, Any] = {key: value for key, value in env.items() if value is not None}
    values.update({key: value for key, value in overrides.items() if value is not None})
    return ReceiverSettings(
        database_url=database_url,
        secret=secret.encode() if secret else None,
        unsigned=unsigned,
        unsigned_any_address=bool(unsigned_any_address or _env_flag("KNIT_WEBHOOK_UNSIGNED_ANY_ADDRESS")),
        schemas=Schemas.from_env(landing=landing_schema),
        **values,
    )


def resolve_mounted_settings() -> ReceiverSettings:
    """:func:`resolve_settings` for the receiver mounted in Airflow's API server (the plugin's loader)."""
    settings = resolve_settings()
    settings.check_listen_address(None)
    return settings
