"""``python -m knit_provider integrations list|disable|enable``: see and steer the integration registry."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from knit_provider.landing.integrations import STATES, Integration
from knit_provider.settings import Schemas
from knit_provider.terminal import json_line, say, visible


def add_parser(commands: Any) -> None:
    """Add ``integrations`` and its three subcommands to ``python -m knit_provider``'s subparsers."""
    parser = commands.add_parser(
        "integrations",
        help="list the integrations the landing store has seen; disable or enable them",
        description="Every integration whose events landed is in the registry, with its state: active (Knit's "
        "last activation had no validation errors), failed_validation, seen_only_through_syncs (runs landed, no "
        "activation), or disabled (by you, until enabled). The main DAG's 'all active' mode syncs the active "
        "ones; the onboarding DAG starts the initial sync of each newly activated one.",
    )
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="one line per integration, by id")
    listing.add_argument("--state", action="append", choices=STATES, help="only this state (repeatable)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line, every column")
    listing.set_defaults(action_func=_list)

    for name, disabled, what in (
        ("disable", True, "leave out of 'all active' syncs and of onboarding, whatever Knit sends, until enabled"),
        ("enable", False, "undo disable: the state follows Knit's last activation (or the runs) again"),
    ):
        action = actions.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        action.add_argument("integration_id", nargs="+", help="integration ids, as `integrations list` shows them")
        action.set_defaults(action_func=_set_disabled, disabled=disabled)


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; unknown ids raise ``LookupError`` (``error: ...``, exit status 2)."""
    result: int = args.action_func(args, Schemas.from_env(landing=args.landing_schema))
    return result


def _transaction(args: argparse.Namespace, work: Any) -> Any:
    from knit_provider.cli_connection import in_transaction

    return in_transaction(args, "knit-integrations", work)


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def _errors(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 100 else text[:99] + "…"


def _row(i: Integration) -> tuple[str, ...]:
    return (
        i.integration_id,
        i.state,
        _when(i.first_seen_at),
        _when(i.activated_at),
        i.last_sync_run_id or "-",
        _when(i.last_event_at),
        _when(i.onboarded_at),
        _errors(i.validation_errors),
    )


def _print_table(integrations: list[Integration]) -> None:
    header = ("INTEGRATION", "STATE", "FIRST SEEN", "ACTIVATED", "LAST RUN", "LAST EVENT", "ONBOARDED", "ERRORS")
    rows = [tuple(map(visible, _row(i))) for i in integrations]  # made visible before their widths are measured
    widths = [max(len(row[k]) for row in (header, *rows)) for k in range(len(header) - 1)]
    for row in (header, *rows):
        say(("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]).rstrip())


def _list(args: argparse.Namespace, schemas: Schemas) -> int:
    from knit_provider.landing.integrations import list_integrations

    found: list[Integration] = _transaction(args, lambda cur: list_integrations(cur, schemas, states=args.state))
    if args.json:
        for integration in found:
            say(json_line(integration.as_dict()))
        return 0
    if not found:
        say(
            "no integrations"
            + (f" in state {', '.join(args.state)}" if args.state else "")
            + ": an integration appears once one of its events (an activation or a sync) landed"
        )
        return 0
    _print_table(found)
    return 0


def _set_disabled(args: argparse.Namespace, schemas: Schemas) -> int:
    from knit_provider.landing.integrations import set_disabled

    changed: list[Integration] = _transaction(
        args, lambda cur: set_disabled(cur, schemas, args.integration_id, disabled=args.disabled)
    )
    for integration in changed:
        say(f"{integration.integration_id}: {integration.state}")
    return 0
