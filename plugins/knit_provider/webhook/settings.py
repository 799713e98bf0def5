"""Settings of the webhook receiver, resolved once from Airflow connections, the environment and flags.

Precedence, highest first: explicit values (CLI flags), ``KNIT_WEBHOOK_*`` environment variables,
the Airflow connections (``knit_landing_default`` for the database, ``knit_default`` for the
signing key), then the defaults below. Connections resolve through ``BaseHook.get_connection``,
so ``AIRFLOW_CONN_*`` variables work without an Airflow metadata database.

Each setting is declared once, on its field of ``ReceiverSettings`` (``setting_table.declare``: its
variable, flag, help and bound); the command's flags, the variables read, the bounds checked and the
README's table (``python -m knit_provider.webhook.settings`` prints it) come from those declarations.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass, field
from typing import Any

from knit_provider.settings import DEFAULT_KNIT_CONN_ID, DEFAULT_LANDING_CONN_ID, Schemas
from knit_provider.webhook.setting_table import (
    AT_LEAST_ONE,
    MORE_THAN_ZERO_SECONDS,
    NOT_NEGATIVE,
    TCP_PORT,
    Bound,
    Setting,
    SettingsError,
    check_bounds,
    declarations,
    declare,
    from_environment,
    markdown_table,
)

KiB = 1024
MiB = 1024 * KiB
# Bodies over LARGE_BODY_BYTES read at once per process (others wait), each one read per turn of the event
# loop: however many forgers send large bodies, a small delivery waits for at most this many reads.
LARGE_BODY_BYTES = 256 * KiB


@dataclass(frozen=True)
class ReceiverSettings:
    """Everything the receiver needs; ``secret`` is ``None`` only in explicit unsigned mode.

    Each field declared with ``declare`` is a setting: its flag, its variable, its bound and its line
    of the README come from here (see ``setting_table``).
    """

    database_url: str = field(
        metadata=declare(
            env="KNIT_WEBHOOK_DATABASE_URL",
            flag="--database-url",
            parse=str,
            shown="connection",
            help="Landing database URL of the receiver, instead of the `knit_landing_default` connection "
            "(`--landing-conn-id`).",
        )
    )
    secret: bytes | None = field(
        repr=False,
        metadata=declare(
            env="KNIT_WEBHOOK_SECRET",
            flag="--secret",
            parse=str,
            shown="API key",
            help="Signing key of the receiver (else the `knit_default` connection's extra `webhook_secret`, "
            "else its API key; `--knit-conn-id` names the connection). Prefer the variable: flags show in `ps`.",
        ),
    )
    unsigned: bool = field(
        default=False,
        metadata=declare(
            env="KNIT_WEBHOOK_UNSIGNED",
            flag="--unsigned",
            help="Accept unsigned bodies. Local demos only; logged loudly. Refused beside a signing key "
            "(flag, variable or connection), and off loopback.",
        ),
    )
    unsigned_any_address: bool = field(
        default=False,
        metadata=declare(
            env="KNIT_WEBHOOK_UNSIGNED_ANY_ADDRESS",
            flag="--unsigned-on-any-address",
            help="Also allow unsigned mode on a non-loopback `--host`, and when mounted in Airflow's API "
            "server (whose address the receiver cannot know).",
        ),
    )
    max_body_bytes: int = field(
        default=5 * MiB,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_BODY_BYTES",
            flag="--max-body-bytes",
            bound=AT_LEAST_ONE,
            help="Larger bodies get 413.",
        ),
    )
    # Bodies up to this size whose raw bytes fail the signature are also checked in compact form (a parse
    # and a re-encode on the event loop): Knit's application bodies are a few kB, a forger's may be 5 MiB.
    compact_signature_max_bytes: int = field(
        default=256 * KiB,
        metadata=declare(
            env="KNIT_WEBHOOK_COMPACT_SIGNATURE_MAX_BYTES",
            flag="--compact-signature-max-bytes",
            bound=Bound(lambda value: value >= 0, "must not be negative (0 turns the compact form off)"),
            help="Largest body whose signature is also checked over its compact JSON form when the raw "
            "bytes do not match (a parse per try; Knit's bodies are a few kB). `0`: raw bytes only.",
        ),
    )
    batch_size: int = field(
        default=500,
        metadata=declare(
            env="KNIT_WEBHOOK_BATCH_SIZE",
            flag="--batch-size",
            bound=AT_LEAST_ONE,
            help="Most events per commit (group commit).",
        ),
    )
    batch_wait_ms: float = field(
        default=0.0,
        metadata=declare(
            env="KNIT_WEBHOOK_BATCH_WAIT_MS",
            flag="--batch-wait-ms",
            bound=NOT_NEGATIVE,
            help="Longest wait to fill a batch, in milliseconds.",
        ),
    )
    queue_size: int = field(
        default=10_000,
        metadata=declare(
            env="KNIT_WEBHOOK_QUEUE_SIZE",
            flag="--queue-size",
            bound=AT_LEAST_ONE,
            help="Events waiting for a commit before the receiver answers 503.",
        ),
    )
    writers: int = field(
        default=2,
        metadata=declare(
            env="KNIT_WEBHOOK_WRITERS",
            flag="--writers",
            bound=AT_LEAST_ONE,
            help="Database connections per receiver process.",
        ),
    )
    summary_interval_seconds: float = field(
        default=60.0,
        metadata=declare(
            env="KNIT_WEBHOOK_SUMMARY_INTERVAL_SECONDS",
            flag="--summary-interval",
            help="Seconds between throughput lines in the receiver's log.",
        ),
    )
    retry_after_seconds: int = 5  # of a 503; not a setting (tests shorten it)
    # Limits of the standalone server, before any body is read (the mounted app leaves them to the proxy).
    max_url_bytes: int = field(
        default=8 * KiB,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_URL_BYTES",
            flag="--max-url-bytes",
            bound=AT_LEAST_ONE,
            help="Standalone: a longer request URL gets 414.",
        ),
    )
    max_header_bytes: int = field(
        default=8 * KiB,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_HEADER_BYTES",
            flag="--max-header-bytes",
            bound=AT_LEAST_ONE,
            help="Standalone: a larger header (name and value) gets 431.",
        ),
    )
    max_head_bytes: int = field(
        default=64 * KiB,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_HEAD_BYTES",
            flag="--max-head-bytes",
            bound=AT_LEAST_ONE,
            help="Standalone: a larger request head (URL and headers) gets 431.",
        ),
    )
    max_headers: int = field(
        default=100,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_HEADERS",
            flag="--max-headers",
            bound=AT_LEAST_ONE,
            help="Standalone: more headers get 431.",
        ),
    )
    head_timeout_seconds: float = field(
        default=30.0,
        metadata=declare(
            env="KNIT_WEBHOOK_HEAD_TIMEOUT_SECONDS",
            flag="--head-timeout",
            bound=MORE_THAN_ZERO_SECONDS,
            help="Standalone: a request head not complete this long after the request's first byte gets 408.",
        ),
    )
    body_timeout_seconds: float = field(
        default=60.0,
        metadata=declare(
            env="KNIT_WEBHOOK_BODY_TIMEOUT_SECONDS",
            flag="--body-timeout",
            bound=MORE_THAN_ZERO_SECONDS,
            help="A request not complete this long after its first byte gets 408 (mounted: after its head, "
            "while the app reads the body).",
        ),
    )
    idle_timeout_seconds: float = field(
        default=15.0,
        metadata=declare(
            env="KNIT_WEBHOOK_IDLE_TIMEOUT_SECONDS",
            flag="--idle-timeout",
            bound=MORE_THAN_ZERO_SECONDS,
            help="Standalone: a kept-alive connection without a request for this long is closed.",
        ),
    )
    # Below the usual 1024 open files per process, leaving room for database connections and the log.
    max_connections: int = field(
        default=1000,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_CONNECTIONS",
            flag="--max-connections",
            bound=AT_LEAST_ONE,
            help="Standalone: open connections per process; at the cap the connection idle longest is closed "
            "to make room, and only when none is idle does a new one get a 503 and is closed before "
            "anything is read.",
        ),
    )
    # Of those, per client address: one address cannot take them all (Knit delivers from a few addresses,
    # tens of connections each).
    max_connections_per_address: int = field(
        default=256,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_CONNECTIONS_PER_ADDRESS",
            flag="--max-connections-per-address",
            bound=AT_LEAST_ONE,
            help="Standalone: open connections per client address; more get a 503 and are closed. Behind a "
            "proxy every connection comes from the proxy: set it to `KNIT_WEBHOOK_MAX_CONNECTIONS` there.",
        ),
    )
    # Knit's bodies are a few kB, so only many large bodies at once reach it.
    max_buffered_bytes: int = field(
        default=64 * MiB,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_BUFFERED_BYTES",
            flag="--max-buffered-bytes",
            bound=AT_LEAST_ONE,
            help="Request bodies a process holds while reading them (standalone, and mounted in the API "
            "server), counted by declared `Content-Length` (chunked: as they arrive); a body that does not "
            "fit gets a 503 with `Retry-After`. At least `KNIT_WEBHOOK_MAX_BODY_BYTES`.",
        ),
    )
    max_large_bodies: int = field(
        default=4,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_LARGE_BODIES",
            flag="--max-large-bodies",
            bound=AT_LEAST_ONE,
            help=f"Standalone: bodies over {LARGE_BODY_BYTES // KiB} KiB read at once per process; the others "
            "wait (within the body deadline).",
        ),
    )
    metrics_port: int | None = field(
        default=None,
        metadata=declare(
            env="KNIT_WEBHOOK_METRICS_PORT",
            flag="--metrics-port",
            parse=int,
            bound=TCP_PORT,
            shown="off",
            help="Standalone: serve [Prometheus metrics](#metrics) on this port, a listener of its own.",
        ),
    )
    metrics_host: str = field(
        default="127.0.0.1",
        metadata=declare(
            env="KNIT_WEBHOOK_METRICS_HOST",
            flag="--metrics-host",
            help="Address of the metrics listener.",
        ),
    )
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
        check_bounds(SETTINGS, self)
        self._check_limits_agree()

    def _check_limits_agree(self) -> None:
        """The bounds one setting sets another, beyond each one's own (``check_bounds``)."""
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


#: The receiver's settings, in the order of the README's table.
SETTINGS: tuple[Setting, ...] = declarations(ReceiverSettings)


def readme_table() -> str:
    """The README's table of the receiver's settings (``python -m knit_provider.webhook.settings`` prints it)."""
    return markdown_table(SETTINGS)


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


def _given_url(url: str | None) -> str | None:
    """A given landing URL (any libpq form) as both drivers read it; a malformed one stops the start, not retried."""
    from knit_provider.database_urls import DatabaseUrlError, canonical_url

    try:
        return canonical_url(url) if url else None
    except DatabaseUrlError as exc:
        raise SettingsError(f"--database-url (KNIT_WEBHOOK_DATABASE_URL): {exc}") from None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: whatever it resolves to, it is not known to be loopback
        return False


def resolve_settings(
    *,
    landing_conn_id: str = DEFAULT_LANDING_CONN_ID,
    knit_conn_id: str = DEFAULT_KNIT_CONN_ID,
    landing_schema: str | None = None,
    **flags: Any,
) -> ReceiverSettings:
    """Build the settings from flags (``None``: not given), then ``KNIT_WEBHOOK_*`` variables, then the
    Airflow connections, then the defaults.

    :param flags: values by field name, as ``python -m knit_provider.webhook`` parses them.
    """
    from_env = from_environment(SETTINGS)
    # An empty flag is not given, as an empty variable is unset: ``--secret ""`` leaves the key to the others.
    given = {name: value for name, value in flags.items() if value is not None and value != ""}
    values = {**from_env, **given}
    database_url = _given_url(values.pop("database_url", None)) or _landing_url(landing_conn_id)
    secret = values.pop("secret", None) or webhook_secret(knit_conn_id)
    if values.get("unsigned") and secret:
        # Never let a leftover flag turn authentication off while a key is configured.
        source = "--secret" if "secret" in given else "KNIT_WEBHOOK_SECRET" if "secret" in from_env else None
        source = source or f"the connection {knit_conn_id!r}"
        raise SettingsError(
            f"Unsigned mode (--unsigned, KNIT_WEBHOOK_UNSIGNED) and a signing key ({source}) are both "
            "configured, so the receiver refuses to start rather than ignore the key: remove "
            "KNIT_WEBHOOK_UNSIGNED (or --unsigned) to verify signatures, or, for a local demo, remove the key."
        )
    return ReceiverSettings(
        database_url=database_url,
        secret=secret.encode() if secret else None,
        schemas=Schemas.from_env(landing=landing_schema),
        **values,
    )


def resolve_mounted_settings() -> ReceiverSettings:
    """:func:`resolve_settings` for the receiver mounted in Airflow's API server (the plugin's loader)."""
    settings = resolve_settings()
    settings.check_listen_address(None)
    return settings


if __name__ == "__main__":
    sys.stdout.write(readme_table())
