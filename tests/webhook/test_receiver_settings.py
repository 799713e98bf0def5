"""The receiver's settings are declared once: the flags, the variables, the bounds and the README's table
all come from the declarations on ``ReceiverSettings`` (``knit_provider.webhook.setting_table``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import pytest
from receiver_helpers import ROOT

from knit_provider.webhook.__main__ import _settings, build_parser
from knit_provider.webhook.setting_table import (
    AT_LEAST_ONE,
    Setting,
    SettingsError,
    add_flags,
    check_bounds,
    declarations,
    declare,
    from_environment,
    markdown_table,
)
from knit_provider.webhook.settings import SETTINGS, readme_table

BEGIN = "<!-- receiver-settings:"
END = "<!-- /receiver-settings -->"
# Values no default has, one set from the variables and one from the flags; the others are the default
# plus 1 and plus 2, which keep every limit within the others (a head within max_head_bytes, ...).
SAMPLES: dict[str, tuple[str, str]] = {
    "database_url": ("postgresql://from-env/db", "postgresql://from-flag/db"),
    "secret": ("env-key", "flag-key"),
    "metrics_port": ("9001", "9002"),
    "metrics_host": ("127.0.0.2", "127.0.0.3"),
}


def _documented_table() -> str:
    """The rows between the markers, in whichever of the README and docs/ holds them (exactly one)."""
    holders = [
        path for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))] if BEGIN in path.read_text()
    ]
    assert len(holders) == 1, f"the receiver's settings table should be in exactly one document, found {holders}"
    text = holders[0].read_text()
    begin = text.index("\n", text.index(BEGIN)) + 1
    return text[begin : text.index(END)]


def test_the_readme_table_is_the_declared_one() -> None:
    assert _documented_table() == readme_table(), (
        "The README's table of the receiver's settings differs from their declarations: replace the rows "
        "between the receiver-settings markers with the output of `python -m knit_provider.webhook.settings`."
    )


def _sample(setting: Setting, which: int) -> str:
    """A value of ``setting`` as its variable or flag spells it: 0 from the variable, 1 from the flag."""
    if setting.name in SAMPLES:
        return SAMPLES[setting.name][which]
    value = setting.default + which + 1
    return str(int(value) if isinstance(value, float) and value.is_integer() else value)


def test_every_setting_is_read_from_its_variable_and_its_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real command's parser, for every declared setting (a yes/no one: test_unsigned_mode)."""
    values = [setting for setting in SETTINGS if not isinstance(setting.default, bool)]
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
    for setting in values:
        monkeypatch.setenv(setting.env, _sample(setting, 0))
    from_env = _settings(build_parser().parse_args([]))
    flags = [part for setting in values for part in (setting.flag, _sample(setting, 1))]
    from_flags = _settings(build_parser().parse_args(flags))
    for setting in values:
        expected_env, expected_flag = (setting.parse(_sample(setting, which)) for which in (0, 1))
        if setting.name == "secret":
            expected_env, expected_flag = expected_env.encode(), expected_flag.encode()
        assert getattr(from_env, setting.name) == expected_env, setting.env
        assert getattr(from_flags, setting.name) == expected_flag, setting.flag
    help_text = " ".join(build_parser().format_help().split())
    for setting in SETTINGS:
        assert f"({setting.env}; default: " in help_text


@dataclass(frozen=True)
class _Example:
    """A settings class of the test's own: what a new receiver limit needs, and all it needs."""

    plain: int = 1  # not declared: no flag, no variable, no row
    max_widgets: int = field(
        default=8,
        metadata=declare(
            env="KNIT_WEBHOOK_MAX_WIDGETS", flag="--max-widgets", bound=AT_LEAST_ONE, help="Most `widgets`."
        ),
    )


def test_a_declared_field_gets_its_flag_variable_bound_and_row(monkeypatch: pytest.MonkeyPatch) -> None:
    (setting,) = declarations(_Example)
    assert (setting.name, setting.default, setting.parse, setting.shown) == ("max_widgets", 8, int, "8")
    parser = argparse.ArgumentParser()
    add_flags(parser, [setting])
    assert parser.parse_args(["--max-widgets", "3"]).max_widgets == 3
    assert parser.parse_args([]).max_widgets is None  # not given: the variable or the default decides
    monkeypatch.setenv("KNIT_WEBHOOK_MAX_WIDGETS", "5")
    assert from_environment([setting]) == {"max_widgets": 5}
    monkeypatch.setenv("KNIT_WEBHOOK_MAX_WIDGETS", "five")
    with pytest.raises(SettingsError, match="KNIT_WEBHOOK_MAX_WIDGETS='five' is not a number"):
        from_environment([setting])
    with pytest.raises(SettingsError, match="max_widgets must be at least 1, got 0"):
        check_bounds([setting], _Example(max_widgets=0))
    assert (
        markdown_table([setting]).splitlines()[2]
        == "| `--max-widgets` | `KNIT_WEBHOOK_MAX_WIDGETS` | 8 | Most `widgets`. |"
    )


def test_a_default_without_a_type_needs_a_parser() -> None:
    @dataclass(frozen=True)
    class Untyped:
        port: Any = field(default=None, metadata=declare(env="KNIT_WEBHOOK_X", flag="--x", help="X."))

    with pytest.raises(TypeError, match="the setting 'port' needs parse="):
        declarations(Untyped)
