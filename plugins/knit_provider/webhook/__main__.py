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
from knit_provider.webhook.setting_table import add_flags
from knit_provider.webhook.settings import SETTINGS, ReceiverSettings, SettingsError, resolve_settings

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
    parser.add_argument("--landing-conn-id", default=DEFAULT_LANDING_CONN_ID, help="(default: %(default)s)")
    parser.add_argument(
        "--knit-conn-id", default=DEFAULT_KNIT_CONN_ID, help="connection holding the signing key (default: %(default)s)"
    )
    parser.add_argument("--landing-schema", help="landing schema (default: $KNIT_LANDING_SCHEMA or knit_landing)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_flags(parser, SETTINGS)
    return parser


def _settings(args: argparse.Namespace) -> ReceiverSettings:
    settings = resolve_settings(
        landing_conn_id=args.landing_conn_id,
        knit_conn_id=args.knit_conn_id,
        landing_schema=args.landing_schema,
        **{setting.name: getattr(args, setting.name) for setting in SETTINGS},
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
