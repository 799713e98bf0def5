"""How a receiver setting is declared, and what is derived from the declarations.

A field of ``ReceiverSettings`` whose metadata is ``declare(...)`` is a setting: its name, type and
default are the field's; the declaration adds its variable, its flag, its help and its bound. From the
tuple :func:`declarations` makes of them come the flags (:func:`add_flags`), the variables
(:func:`from_environment`), the bounds checked on every ``ReceiverSettings`` (:func:`check_bounds`)
and the README's table (:func:`markdown_table`), so a setting is written in one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_KEY = "knit_setting"
_TRUE = {"1", "true", "yes", "on"}
_KiB = 1024
_MiB = 1024 * 1024
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


class SettingsError(ValueError):
    """The receiver cannot start as configured; the message says what to set."""


@dataclass(frozen=True)
class Bound:
    """What a value must satisfy; a value outside it is refused with "<field> <says>, got <value>"."""

    holds: Callable[[Any], bool]
    says: str


# NaN is refused by every bound: each comparison with it is false.
AT_LEAST_ONE = Bound(lambda value: value >= 1, "must be at least 1")
MORE_THAN_ZERO_SECONDS = Bound(lambda value: value > 0, "must be more than 0 seconds")
NOT_NEGATIVE = Bound(lambda value: value >= 0, "must not be negative")
TCP_PORT = Bound(lambda value: 0 <= value <= 65535, "must be a TCP port (0-65535)")


@dataclass(frozen=True)
class _Declared:
    """What ``declare`` adds to a field (see there)."""

    env: str
    flag: str
    help: str
    bound: Bound | None
    parse: Callable[[str], Any] | None
    shown: str | None


@dataclass(frozen=True)
class Setting:
    """One receiver setting: a field of ``ReceiverSettings`` with its declaration."""

    name: str
    default: Any  # None for a setting without a default (then the caller resolves it)
    env: str
    flag: str
    help: str  # Markdown: the README's meaning, and (as plain text) the flag's help
    bound: Bound | None
    parse: Callable[[str], Any]
    shown: str  # the default as the README and ``--help`` show it


def declare(
    *,
    env: str,
    flag: str,
    help: str,
    bound: Bound | None = None,
    parse: Callable[[str], Any] | None = None,
    shown: str | None = None,
) -> Mapping[str, _Declared]:
    """A field's metadata making it a receiver setting.

    :param env: its ``KNIT_WEBHOOK_*`` variable.
    :param flag: its flag of ``python -m knit_provider.webhook``.
    :param help: what it does, in Markdown (one line of the README's table).
    :param bound: what a value must satisfy (checked whether it came from a flag, a variable or code).
    :param parse: how its variable's text becomes a value; by default the type of the field's default
        (a yes/no for a ``bool``).
    :param shown: the default as documented, when not the default itself (sizes of ``*_bytes`` fields
        are shown in KiB or MiB).
    """
    return {_KEY: _Declared(env, flag, help, bound, parse, shown)}


def declarations(cls: type) -> tuple[Setting, ...]:
    """The settings declared on the dataclass ``cls``, in the order of its fields."""
    return tuple(_setting(field) for field in dataclasses.fields(cls) if _KEY in field.metadata)


def _setting(field: dataclasses.Field[Any]) -> Setting:
    declared: _Declared = field.metadata[_KEY]
    default = None if field.default is dataclasses.MISSING else field.default
    parse = declared.parse or _PARSERS.get(type(default))
    if parse is None:
        raise TypeError(f"the setting {field.name!r} needs parse=: its default says nothing of its type")
    shown = declared.shown or _shown(field.name, default)
    return Setting(field.name, default, declared.env, declared.flag, declared.help, declared.bound, parse, shown)


def _yes(raw: str) -> bool:
    """Yes for 1, true, yes or on; anything else is no (as the variables were always read)."""
    return raw.strip().lower() in _TRUE


_PARSERS: dict[type, Callable[[str], Any]] = {bool: _yes, int: int, float: float, str: str}


def _shown(name: str, default: Any) -> str:
    """The default as documented: `false`, `text`, a size of a ``*_bytes`` field in KiB or MiB, 60 for 60.0."""
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, str):
        return f"`{default}`"
    if name.endswith("_bytes") and isinstance(default, int) and default:
        for unit, size in (("MiB", _MiB), ("KiB", _KiB)):
            if default % size == 0:
                return f"{default // size} {unit}"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def from_environment(settings: Iterable[Setting]) -> dict[str, Any]:
    """The values of the settings whose variable is set (and not empty), parsed."""
    values: dict[str, Any] = {}
    for setting in settings:
        raw = os.environ.get(setting.env)
        if raw in (None, ""):
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError:  # only the numbers' parsers refuse a text
            raise SettingsError(f"{setting.env}={raw!r} is not a number") from None
    return values


def check_bounds(settings: Iterable[Setting], values: object) -> None:
    """Refuse the first value of ``values`` (an object with the settings as attributes) out of its bound."""
    for setting in settings:
        value = getattr(values, setting.name)
        if setting.bound is not None and value is not None and not setting.bound.holds(value):
            raise SettingsError(f"{setting.name} {setting.bound.says}, got {value}")


def add_flags(parser: argparse.ArgumentParser, settings: Iterable[Setting]) -> None:
    """One flag per setting, its destination the field's name; an absent flag is ``None`` (not given)."""
    group = parser.add_argument_group("settings (a flag wins over its variable, which wins over the connections)")
    for setting in settings:
        text = f"{_plain(setting.help)} ({setting.env}; default: {_plain(setting.shown)})".replace("%", "%%")
        if setting.parse is _yes:
            group.add_argument(setting.flag, dest=setting.name, action="store_true", default=None, help=text)
        else:
            group.add_argument(setting.flag, dest=setting.name, type=setting.parse, help=text)


def _plain(markdown: str) -> str:
    return _LINK.sub(r"\1", markdown).replace("`", "")


def markdown_table(settings: Iterable[Setting]) -> str:
    """The README's table of the settings: flag, variable, default and meaning, one row each."""
    rows = [
        "| Flag | Variable | Default | Meaning |",
        "|---|---|---|---|",
        *(f"| `{s.flag}` | `{s.env}` | {s.shown} | {s.help} |" for s in settings),
    ]
    return "\n".join(rows) + "\n"
