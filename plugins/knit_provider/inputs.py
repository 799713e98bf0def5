"""Read what tasks get from templates, params and XComs: one rule per kind of value, for every task.

A templated field arrives in whatever form rendering produced. With ``render_template_as_native_obj``
it is the object itself; otherwise it is text: a list renders as its repr (``"['a', 'b']"``), through
``tojson`` as a JSON array, and ``None`` as ``"None"``. The operators, the sensor, the triggers, the DAG
tasks and the CLIs all read such values here, so "a list", "nothing" and "a time" mean the same thing
wherever they are given.

The rules:

- **absent**: ``None``, ``""``, ``"None"`` and ``"null"`` (any case, surrounding blanks ignored).
- **list**: a list or tuple; the text of one (JSON, or a Python repr); or ``"a, b"`` separated by commas.
  Absent or ``"[]"`` is the empty list. Entries are stripped, absent entries dropped, and a duplicate
  keeps its first place. Every entry must be a string.
- **time**: an aware ``datetime`` or ISO-8601 text (``Z`` accepted). A time without a zone is refused:
  which zone was meant cannot be known (Airflow's own times, ``data_interval_start`` and the landing
  database's ``now()``, always carry one).
- **mapping**: a mapping, or the text of one (JSON, or a Python repr); absent is ``{}``.
- **yes/no, whole number, seconds** (each optional): the value, or its text (``true``/``false`` in any case;
  digits; a number of 0 or more); absent is None.

Every refusal is a :class:`~knit_provider.exceptions.KnitInputError` naming the value: Airflow fails the
task at once (a retry would read the same value), and a CLI prints it as ``error: ...``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from knit_provider.exceptions import KnitInputError

_ABSENT = {"", "none", "null"}


def optional_text(value: Any) -> str | None:
    """The value as stripped text, or None when it is absent (``None``, ``""``, ``"None"``, ``"null"``)."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in _ABSENT else text


def _literal(text: str) -> Any:
    """The object a rendered text stands for: JSON first (``tojson``), else a Python literal (a repr)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def parse_list(value: Any, name: str) -> list[str]:
    """Read a list of ids (see the module docstring); ``name`` is the param or field the error names."""
    if isinstance(value, str):
        text = optional_text(value)
        if text is None:
            return []
        if text.startswith("["):
            parsed = _literal(text)
            if not isinstance(parsed, list):
                raise KnitInputError(
                    f"{name}={value!r} looks like a list but cannot be read: pass a list such as "
                    '["a", "b"], or the ids separated by commas.'
                )
            return parse_list(parsed, name)
        return _unique(part.strip() for part in text.split(","))
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise KnitInputError(f"{name} must be a list of strings, got {type(value).__name__} {value!r}.")
    wrong = [item for item in value if item is not None and not isinstance(item, str)]
    if wrong:
        raise KnitInputError(f"{name} must be a list of strings, got {value!r}: {wrong[0]!r} is not a string.")
    return _unique(optional_text(item) for item in value)


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def parse_time(value: Any, name: str) -> datetime | None:
    """Read an aware time (see the module docstring); None when absent. ``name`` is what the error names."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = optional_text(value)
        if text is None:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise KnitInputError(
                f"{name}={text!r} is not an ISO-8601 time: write e.g. '2025-05-01T10:00:00+00:00' "
                "(or pass '{{ data_interval_start }}')."
            ) from None
    if moment.utcoffset() is None:
        raise KnitInputError(
            f"{name}={str(value)!r} has no time zone, so which moment it means is unknown: add one, "
            "e.g. '2025-05-01T10:00:00Z' or '+00:00'."
        )
    return moment


def required_time(value: Any, name: str) -> datetime:
    """Read an aware time that must be given (see :func:`parse_time`)."""
    moment = parse_time(value, name)
    if moment is None:
        raise KnitInputError(f"{name} is empty: give an ISO-8601 time with a zone, e.g. '2025-05-01T10:00:00Z'.")
    return moment


def parse_mapping(value: Any, name: str, hint: str = "") -> dict[str, Any]:
    """Read a mapping such as an XCom dict (see the module docstring); ``{}`` when absent.

    ``hint`` ends the error with what the caller should pass instead.
    """
    if isinstance(value, Mapping):
        return dict(value)
    if value is None or (isinstance(value, str) and optional_text(value) is None):
        return {}
    parsed = _literal(value) if isinstance(value, str) else None
    if not isinstance(parsed, Mapping):
        raise KnitInputError(f"{name}={value!r} is not a mapping (a dict, or its JSON text).{hint}")
    return dict(parsed)


def optional_flag(value: Any, name: str) -> bool | None:
    """A templated yes/no: a bool, or its text (``true``/``false``, any case); absent (``"None"``, ``""``) is None."""
    if isinstance(value, bool):
        return value
    text = optional_text(value)
    if text is None:
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise KnitInputError(f"{name} must be true or false, got {value!r}.")


def optional_whole(value: Any, name: str) -> int | None:
    """A templated whole number, or its text; absent is None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = optional_text(value)
    if text is None:
        return None
    if isinstance(value, str) and text.lstrip("-").isdigit():
        return int(text)
    raise KnitInputError(f"{name} must be a whole number, got {value!r}.")


def optional_seconds(value: Any, name: str) -> float | None:
    """A templated number of seconds (0 or more), or its text; absent is None."""
    text = optional_text(value)
    if text is None:
        return None
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses NaN
        raise KnitInputError(f"{name} must be a number of seconds (0 or more), or None, got {value!r}.")
    return seconds
