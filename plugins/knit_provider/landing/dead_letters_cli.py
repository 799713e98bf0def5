"""``python -m knit_provider dead-letters list|show|replay``: inspect the dead letters and land them again."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
from typing import Any

import orjson

from knit_provider.cli_connection import in_transaction, landing_hook
from knit_provider.inputs import parse_time
from knit_provider.landing.dead_letters import DeadLetter, DeadLetterInfo, DeadLetterNotFoundError
from knit_provider.settings import Schemas
from knit_provider.terminal import say, visible

APPLICATION_NAME = "knit-dead-letters"
_BODY_HEAD_BYTES = 512  # of a body that is not JSON, what `show` prints


def add_parser(commands: Any) -> None:
    """Add ``dead-letters`` and its three subcommands to ``python -m knit_provider``'s subparsers."""
    parser = commands.add_parser(
        "dead-letters",
        help="list, show or replay the signed bodies the receiver could not land",
        description="Authentic bodies that were not usable events are kept once each in the dead letters "
        "(answered 200, so Knit stops retrying). Inspect them, and replay them through the "
        "receiver's write path once the cause is fixed.",
    )
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="one line per dead letter, oldest first")
    listing.add_argument("--run-id", help="only those that carry this sync run id")
    listing.add_argument("--integration-id", help="only those of this integration")
    listing.add_argument("--since", help="only those seen at or after this ISO time with a zone")
    listing.add_argument("--include-replayed", action="store_true", help="also those already replayed")
    listing.set_defaults(action_func=_list)

    show = actions.add_parser("show", help="headers, reason and body of one dead letter")
    show.add_argument("id", type=int)
    show.set_defaults(action_func=_show)

    replay = actions.add_parser(
        "replay",
        help="land dead letters as events through the receiver's write path, and mark them replayed",
    )
    replay.add_argument("id", type=int, nargs="*", help="dead letter ids")
    replay.add_argument("--all-for-run", metavar="RUN", help="every dead letter of this sync run not yet replayed")
    replay.add_argument(
        "--dry-run", action="store_true", help="write in a transaction that is rolled back: show what would happen"
    )
    replay.set_defaults(action_func=_replay)


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; unknown ids raise ``LookupError`` (``error: ...``, exit status 2)."""
    result: int = args.action_func(args, Schemas.from_env(landing=args.landing_schema))
    return result


def _cursor_call(args: argparse.Namespace, work: Any) -> Any:
    return in_transaction(args, APPLICATION_NAME, work)


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def _list(args: argparse.Namespace, schemas: Schemas) -> int:
    from knit_provider.landing.dead_letters import list_dead_letters

    since = parse_time(args.since, "--since")
    letters: list[DeadLetterInfo] = _cursor_call(
        args,
        lambda cur: list_dead_letters(
            cur,
            schemas,
            run_id=args.run_id,
            integration_id=args.integration_id,
            since=since,
            include_replayed=args.include_replayed,
        ),
    )
    if not letters:
        say("no dead letters" + ("" if args.include_replayed else " waiting for replay"))
        return 0
    header = ("ID", "FIRST SEEN", "LAST SEEN", "ATTEMPTS", "INTEGRATION", "RUN", "REPLAYED", "REASON")
    rows = [tuple(map(visible, _row(d))) for d in letters]  # made visible before their widths are measured
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _row(d: DeadLetterInfo) -> tuple[str, ...]:
    return (
        str(d.id),
        _when(d.received_at),
        _when(d.last_received_at),
        str(d.attempts),
        d.integration_id or "-",
        d.sync_run_id or "-",
        _when(d.replayed_at),
        d.reason if len(d.reason) <= 100 else d.reason[:99] + "…",
    )


def _body_text(body: bytes) -> str:
    """Pretty JSON when the body parses, else the repr of its first bytes (truncated, not UTF-8, ...)."""
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        head = repr(body[:_BODY_HEAD_BYTES])
        more = f"\n… {len(body) - _BODY_HEAD_BYTES} more bytes" if len(body) > _BODY_HEAD_BYTES else ""
        return f"(not JSON) {head}{more}"


def _show(args: argparse.Namespace, schemas: Schemas) -> int:
    from knit_provider.landing.dead_letters import get_dead_letter

    letter: DeadLetter = _cursor_call(args, lambda cur: get_dead_letter(cur, schemas, args.id))
    d = letter.info
    say(f"dead letter #{d.id}")
    say(f"reason:       {d.reason}")
    say(f"attempts:     {d.attempts} (first {_when(d.received_at)}, last {_when(d.last_received_at)})")
    say(f"replayed:     {_when(d.replayed_at)}")
    say(f"integration:  {d.integration_id or '-'}")
    say(f"event:        {d.event_id or '-'} ({d.event_type or 'type unknown'})")
    say(f"job / run:    {d.sync_job_id or '-'} / {d.sync_run_id or '-'}")
    say("headers:")
    for name, value in sorted(letter.headers.items()):
        say(f"  {name}: {value}")
    say(f"body ({len(letter.body)} bytes):")
    # Line by line: the pretty JSON's own line breaks are kept (JSON escapes those inside strings).
    for line in _body_text(letter.body).split("\n"):
        say(line)
    return 0


def _replay(args: argparse.Namespace, schemas: Schemas) -> int:
    from knit_provider.landing.dead_letters import list_dead_letters, replay

    if bool(args.id) == bool(args.all_for_run):
        raise ValueError("replay takes dead letter ids or --all-for-run RUN (one of the two): see `dead-letters list`")
    ids = list(args.id)
    if args.all_for_run:
        every = _cursor_call(
            args, lambda cur: list_dead_letters(cur, schemas, run_id=args.all_for_run, include_replayed=True)
        )
        if not every:
            raise DeadLetterNotFoundError(f"No dead letter carries sync run id {args.all_for_run!r}.")
        ids = [d.id for d in every if d.replayed_at is None]
        if not ids:
            say(f"the {len(every)} dead letter(s) of run {args.all_for_run} were all replayed already")
            return 0

    async def go() -> list[Any]:
        conn = await landing_hook(args, APPLICATION_NAME).aget_conn()
        try:
            return await replay(conn, schemas, ids, dry_run=args.dry_run)
        finally:
            await conn.close()

    results = asyncio.run(go())
    for result in results:
        say(("dry run: " if args.dry_run else "") + result.describe(args.dry_run))
    runs = sorted({r.sync_run_id for r in results if r.landed and r.new and r.sync_run_id})
    if runs and not args.dry_run:
        say(
            "a run normalized before its replayed events landed must be normalized again: "
            + "; ".join(f"python -m knit_provider normalize --run-id {run}" for run in runs)
        )
    failed = [r for r in results if not r.landed]
    if failed:
        say(f"error: {len(failed)} dead letter(s) not replayed (see above); they are left as they were", err=True)
        return 1
    return 0
