"""``python -m knit_provider normalize``: normalize runs from a shell and print what was done."""

from __future__ import annotations

import argparse

from knit_provider.inputs import required_time
from knit_provider.settings import Schemas
from knit_provider.terminal import say


def _data_types(args: argparse.Namespace) -> list[str]:
    """The data types whose runs ``--pending``/``--completed-between`` select: ``--data-type``, else every enabled one.

    Each type's runs are taken oldest first, one type after the other: runs of different types never write
    the same rows, so their order does not matter.
    """
    from knit_provider.data_types import enabled, get

    chosen = getattr(args, "data_type", None) or []
    if chosen and args.run_id:
        raise ValueError("--data-type selects runs for --pending or --completed-between; a --run-id is its own type")
    return [get(name).name for name in chosen] if chosen else [spec.name for spec in enabled()]


def run(args: argparse.Namespace) -> int:
    """Normalize the chosen runs, reconcile each complete one; exit 1 if events are missing.

    Refusals (unknown run, incomplete run without ``--force``) raise ``LookupError``/``ValueError``,
    which ``python -m knit_provider`` prints as ``error: ...`` with exit status 2.
    """
    from knit_provider.cli_connection import landing_hook
    from knit_provider.normalize.apply import normalize_run
    from knit_provider.normalize.reconcile import reconcile_run
    from knit_provider.normalize.runs import pending_runs, runs_completed_between
    from knit_provider.normalize.schema import ensure_schema

    schemas = Schemas.from_env(landing=args.landing_schema, target=args.target_schema)
    data_types = _data_types(args)
    conn = landing_hook(args, "knit-normalize").get_conn()
    try:
        if args.pending:
            run_ids = [run for name in data_types for run in pending_runs(conn, schemas, data_type=name)]
        elif getattr(args, "completed_between", None):
            start, end = (required_time(t, "--completed-between") for t in args.completed_between)
            run_ids = [
                run for name in data_types for run in runs_completed_between(conn, schemas, start, end, data_type=name)
            ]
        else:
            run_ids = list(dict.fromkeys(args.run_id))
        if not run_ids:
            say("nothing to normalize")
            return 0
        ensure_schema(conn, schemas)
        missing = 0
        for run_id in run_ids:
            result = normalize_run(conn, run_id, schemas, force=args.force, only_if_pending=args.pending)
            say(result.describe())
            if result.skipped or not result.complete or getattr(args, "no_reconcile", False):
                continue
            reconciliation = reconcile_run(conn, run_id, schemas)
            say("  reconciled: " + reconciliation.describe())
            if not reconciliation.ok:
                missing += 1
        if missing:
            say(f"error: {missing} run(s) are missing events (see above)", err=True)
            return 1
        return 0
    finally:
        conn.close()
