"""``python -m knit_provider <command>``: operations that run outside a DAG."""

from __future__ import annotations

import argparse
import logging
import sys

from knit_provider.settings import DEFAULT_LANDING_CONN_ID, Schemas
from knit_provider.terminal import say, visible_logs

log = logging.getLogger("knit_provider")


def _migrate(args: argparse.Namespace) -> int:
    from knit_provider.cli_connection import landing_hook
    from knit_provider.landing.migrate import migrate

    schemas = Schemas.from_env(landing=args.landing_schema)
    conn = landing_hook(args, "knit-migrate").get_conn()
    try:
        applied = migrate(conn, schemas)
    finally:
        conn.close()
    say(f"landing schema {schemas.landing}: " + (", ".join(applied) if applied else "up to date"))
    return 0


def _prune(args: argparse.Namespace) -> int:
    from knit_provider.cli_connection import landing_hook
    from knit_provider.landing.retention import RETENTION_ENV, configured_retention, parse_age, prune

    schemas = Schemas.from_env(landing=args.landing_schema)
    older_than = (
        parse_age(args.older_than, "--older-than")
        if args.older_than
        else configured_retention(None if args.database_url else args.conn_id)
    )
    if older_than is None:
        raise ValueError(
            f"prune needs an age: pass --older-than (e.g. 30d), set ${RETENTION_ENV}, or the landing connection's "
            "'retention' extra."
        )
    conn = landing_hook(args, "knit-prune").get_conn()
    try:
        report = prune(conn, schemas, older_than, dry_run=args.dry_run)
    finally:
        conn.close()
    say(f"landing schema {schemas.landing}: {report.describe()}")
    return 0


def _normalize(args: argparse.Namespace) -> int:
    from knit_provider.normalize.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m knit_provider", description=__doc__)
    parser.add_argument(
        "--conn-id",
        default=DEFAULT_LANDING_CONN_ID,
        help="Airflow connection of the landing database (default: %(default)s)",
    )
    parser.add_argument("--database-url", help="Postgres URL; overrides --conn-id")
    parser.add_argument("--landing-schema", help="landing schema (default: $KNIT_LANDING_SCHEMA or knit_landing)")
    parser.add_argument("--target-schema", help="normalized schema (default: $KNIT_SCHEMA or knit)")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="create or upgrade the landing schema").set_defaults(func=_migrate)

    prune = commands.add_parser(
        "prune",
        help="remove the landed events of normalized runs older than the retention",
        description="Remove the landed events of runs that are normalized and whose last event landed before "
        "the age given, never those of a run not yet normalized nor any inside the 7-day dedup window. "
        "sync_runs and the normalized tables are kept; a backfill can only normalize again what is kept.",
    )
    prune.add_argument(
        "--older-than",
        metavar="AGE",
        help="e.g. 30d, 12h, 2w, at least 7d (default: $KNIT_LANDING_RETENTION, else the connection's "
        "'retention' extra)",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    prune.set_defaults(func=_prune)

    normalize = commands.add_parser("normalize", help="normalize completed runs into the target schema")
    which = normalize.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", action="append", help="a sync run id (repeatable)")
    which.add_argument("--pending", action="store_true", help="every completed run not yet normalized")
    which.add_argument(
        "--completed-between",
        nargs=2,
        metavar=("START", "END"),
        help="runs whose allConsumed landed in [START, END) (ISO times with a zone)",
    )
    normalize.add_argument(
        "--data-type",
        action="append",
        metavar="NAME",
        help="with --pending or --completed-between: runs of this data type only (repeatable; default: every "
        "enabled type, $KNIT_DATA_TYPES). A run given by --run-id is normalized as its own type.",
    )
    normalize.add_argument("--force", action="store_true", help="normalize a run whose allConsumed has not landed")
    normalize.add_argument(
        "--no-reconcile", action="store_true", help="skip comparing landed record events with Knit's counts"
    )
    normalize.set_defaults(func=_normalize)

    from knit_provider.landing.dead_letters_cli import add_parser
    from knit_provider.landing.integrations_cli import add_parser as add_integrations_parser

    add_parser(commands)
    add_integrations_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with visible_logs():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from knit_provider.cli_connection import connection_problem

    try:
        return int(args.func(args))
    except (ValueError, LookupError) as exc:
        say(f"error: {exc}", err=True)
        return 2
    except Exception as exc:
        problem = connection_problem(exc, args)
        if problem is None:
            # Logged rather than raised (same exit status): the traceback quotes the error's text,
            # which may quote stored data, and only the log lines are made visible.
            log.exception("%s failed", args.command)
            return 1
        say(f"error: {problem}", err=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
