"""What ``python -m knit_provider`` writes to a terminal: text from the store or from errors, made visible.

Ids, reasons, headers and bodies come from signed deliveries or from the database, i.e. from
outside. Printed raw, ``ESC ] 0;… BEL`` retitles the terminal, ``ESC [2J`` clears it, ``CR``
overwrites what was printed before, and the C1 codes (U+0080 to U+009F) are the same controls in
one character on some terminals (U+009B is ``ESC [``). Every such character is therefore printed
as its escape (``\\x1b``), the way Python's ``repr`` shows it. A backslash is left as it is, so
text that spells ``\\x1b`` looks like an escaped ESC: neither acts on the terminal.

Unicode's bidirectional overrides and isolates (U+202A to U+202E, U+2066 to U+2069, and the marks
U+200E, U+200F, U+061C) are escaped too: they move no cursor, but they reorder how the rest of
the line is displayed ("Trojan Source", CVE-2021-42574), so an id could show as another id, or a
reason could hide the text that follows it. U+2028/U+2029 break lines in some terminals and
viewers, so a value could forge a line of its own.

Text goes through :func:`visible` (one line; a newline inside a value is escaped too) and is
printed by :func:`say`; JSON lines through :func:`json_line`; log lines under :func:`visible_logs`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]  # C0, DEL and C1
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_LINE_BREAKS = [0x2028, 0x2029]
_UNSAFE = [*_CONTROLS, *_BIDI, *_LINE_BREAKS]


# Python's repr escapes every one of them (none is printable): \t, \x1b, \x9b, \u202e.
_VISIBLE = {code: repr(chr(code))[1:-1] for code in _UNSAFE}
# In JSON only \uXXXX is an escape. The encoder already escapes C0 inside strings, and these
# characters can appear nowhere else in its output, so escaping them keeps the JSON valid.
_JSON = {code: f"\\u{code:04x}" for code in _UNSAFE}


def visible(text: str) -> str:
    """``text`` with every control, bidi and line-break character written as its escape.

    Idempotent (an escape is printable), so a cell made visible to measure its width stays as it is.
    """
    return text.translate(_VISIBLE)


def say(line: str = "", *, err: bool = False) -> None:
    """Print one line made :func:`visible` to stdout (or stderr), flushed: the CLIs' only way to print."""
    print(visible(line), file=sys.stderr if err else sys.stdout, flush=True)


def json_line(value: Any) -> str:
    """``value`` as one line of JSON, non-ASCII text kept readable, nothing a terminal would act on."""
    return json.dumps(value, ensure_ascii=False).translate(_JSON)


class _VisibleRecords(logging.Filter):
    """Rewrites a record as its message and traceback made visible line by line, whatever formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text
        record.msg = "\n".join(visible(line) for line in text.split("\n"))
        record.args, record.exc_info, record.exc_text = (), None, None
        return True


@contextmanager
def visible_logs() -> Iterator[None]:
    """While a command runs, every log line the root logger's handlers write is made visible.

    On the handlers, not a formatter of our own: Airflow's logging (set up when airflow is
    imported) or the caller's may own them, and they stay theirs after the command.
    """
    handlers = list(logging.getLogger().handlers)
    only = _VisibleRecords()
    for handler in handlers:
        handler.addFilter(only)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(only)
