"""``python -m knit_provider.webhook``: serve the receiver standalone, for volume.

Settings come from the Airflow connections (``AIRFLOW_CONN_KNIT_LANDING_DEFAULT``,
``AIRFLOW_CONN_KNIT_DEFAULT``), ``KNIT_WEBHOOK_*`` variables and these flags, highest first.
With ``--workers N`` each worker process runs its own server and writer on the same port.
"""

from __future__ import annotations

import argparse
import logging
import sys

from knit_provider.settings import DEFAULT_KNIT_CONN_ID, DEFAULT_LANDING_CONN_ID
from knit_provider.webhook.settings import ReceiverSettings, SettingsError, resolve_settings

log = logging.getLogger("knit_provider.webhook")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m knit_provider.webhook",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8081, help="port to listen on (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="receiver processes (default: %(default)s)")
    parser.add_argument("--database-url", help="landing Postgres URL (default: connection --landing-conn-id)")
    parser.add_argument("--landing-conn-id", default=DEFAULT_LANDING_CONN_ID, help="(default: %(default)s)")
    parser.add_argument(
        "--knit-conn-id", default=DEFAULT_KNIT_CONN_ID, help="connection holding the signing key (default: %(default)s)"
    )
    parser.add_argument("--secret", help="signing key (prefer KNIT_WEBHOOK_SECRET: flags show in `ps`)")
    parser.add_argument(
        "--unsigned",
        action="store_true",
        default=None,
        help="accept unsigned bodies (local demos only; logged loudly; refused when a key is configured)",
    )
    parser.add_argument(
        "--unsigned-on-any-address",
        action="store_true",
        default=None,
        help="allow --unsigned on a --host other than loopback (KNIT_WEBHOOK_UNSIGNED_ANY_ADDRESS)",
    )
    parser.add_argument("--landing-schema", help="landing schema (default: $KNIT_LANDING_SCHEMA or knit_landing)")
    parser.add_argument("--max-body-bytes", type=int, help="larger bodies get 413 (default: 5 MiB)")
    parser.add_argument("--batch-size", type=int, help="most events per commit (default: 500)")
    parser.add_argument("--batch-wait-ms", type=float, help="longest wait to fill a batch (default: 0)")
    parser.add_argument("--queue-size", type=int, help="events waiting for a commit before 503 (default: 10000)")
    parser.add_argument("--writers", type=int, help="database connections per process (default: 2)")
    parser.add_argument(
        "--compact-signature-max-bytes",
        type=int,
        help="largest body whose signature is also checked over its compact JSON form "
        "(default: 256 KiB; 0: raw bytes only)",
    )
    parser.add_argument(
        "--summary-interval",
        type=float,
        dest="summary_interval_seconds",
        help="seconds between throughput summaries in the log (default: 60)",
    )
    limits = parser.add_argument_group("limits of the HTTP server (each answered, then the connection is closed)")
    limits.add_argument("--max-url-bytes", type=int, help="longer URLs get 414 (default: 8 KiB)")
    limits.add_argument("--max-header-bytes", type=int, help="a larger header gets 431 (default: 8 KiB)")
    limits.add_argument("--max-head-bytes", type=int, help="a larger request head gets 431 (default: 64 KiB)")
    limits.add_argument("--max-headers", type=int, help="more headers get 431 (default: 100)")
    limits.add_argument(
        "--head-timeout",
        type=float,
        dest="head_timeout_seconds",
        help="seconds from a request's first byte to the end of its head, else 408 (default: 30)",
    )
    limits.add_argument(
        "--body-timeout",
        type=float,
        dest="body_timeout_seconds",
        help="seconds from a request's first byte to the end of its body, else 408 (default: 60)",
    )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        dest="idle_timeout_seconds",
        help="seconds a kept-alive connection may wait for its next request (default: 15)",
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        help="open connections per process; at the cap the longest idle one is closed for a newcomer, "
        "and without an idle one the newcomer gets 503 (default: 1000)",
    )
    limits.add_argument(
        "--max-connections-per-address",
        type=int,
        help="open connections per client address; more get 503 and are closed (default: 256)",
    )
    limits.add_argument(
        "--max-buffered-bytes",
        type=int,
        help="request bodies a process holds while reading them (declared sizes); a body "
        "that does not fit gets 503 with Retry-After (default: 64 MiB)",
    )
    limits.add_argument(
        "--max-large-bodies", type=int, help="bodies over 256 KiB read at once per process; others wait (default: 4)"
    )
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics at http://METRICS_HOST:PORT/metrics (default: off)"
    )
    parser.add_argument("--metrics-host", help="address of the metrics listener (default: 127.0.0.1)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _settings(args: argparse.Namespace) -> ReceiverSettings:
    settings = resolve_settings(
        database_url=args.database_url,
        secret=args.secret,
        unsigned=args.unsigned,
        unsigned_any_address=args.unsigned_on_any_address,
        landing_conn_id=args.landing_conn_id,
        knit_conn_id=args.knit_conn_id,
        landing_schema=args.landing_schema,
        max_body_bytes=args.max_body_bytes,
        batch_size=args.batch_size,
        batch_wait_ms=args.batch_wait_ms,
        queue_size=args.queue_size,
        writers=args.writers,
        summary_interval_seconds=args.summary_interval_seconds,
        max_url_bytes=args.max_url_bytes,
        max_header_bytes=args.max_header_bytes,
        max_head_bytes=args.max_head_bytes,
        max_headers=args.max_headers,
        head_timeout_seconds=args.head_timeout_seconds,
        body_timeout_seconds=args.body_timeout_seconds,
        idle_timeout_seconds=args.idle_timeout_seconds,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        max_buffered_bytes=args.max_buffered_bytes,
        max_large_bodies=args.max_large_bodies,
        compact_signature_max_bytes=args.compact_signature_max_bytes,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    settings.check_listen_address(args.host)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from knit_provider.webhook.standalone import serve

    log.info(
        "Knit webhook receiver on http://%s:%d/webhook (%d worker(s), %s)",
        args.host,
        args.port,
        args.workers,
        "UNSIGNED" if settings.unsigned else "signatures verified",
    )
    serve(settings, args.host, args.port, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
