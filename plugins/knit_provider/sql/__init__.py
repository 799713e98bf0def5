"""SQL files of the provider, loaded by name with the schema names filled in as quoted identifiers."""

from __future__ import annotations

from functools import cache
from importlib import resources

from knit_provider.settings import NOTIFY_CHANNEL, Schemas, quote_ident


@cache
def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def load_sql(name: str, schemas: Schemas) -> str:
    """Return ``sql/<name>`` with ``{landing}``/``{target}`` as quoted schema names, ``{notify_channel}`` filled.

    Plain ``str.replace`` rather than ``str.format`` so braces in JSON path expressions stay as written.
    """
    return (
        _read(name)
        .replace("{landing}", quote_ident(schemas.landing))
        .replace("{target}", quote_ident(schemas.target))
        .replace("{notify_channel}", NOTIFY_CHANNEL)
    )
