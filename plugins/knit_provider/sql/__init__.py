"""SQL files of the provider, loaded by name with the schema names filled in as quoted identifiers.

A file is run whole where the driver allows it and nothing is wanted per statement: the migrations and
``normalize/schema.sql`` (no parameters: both drivers send the text as one simple query, however many
statements it holds) and ``normalize/finish.sql`` (psycopg2 fills the parameters in client side). A file
whose statements are run, counted or timed one by one goes through :func:`split_statements`, which
reads the SQL (quotes, comments, dollar-quoted bodies) instead of relying on how the file is laid out.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import sqlparse

from knit_provider.settings import NOTIFY_CHANNEL, Schemas, quote_ident

if TYPE_CHECKING:
    from knit_provider.data_types.spec import DataTypeSpec


@cache
def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def fill(text: str, schemas: Schemas, spec: DataTypeSpec | None = None) -> str:
    """Fill ``{landing}``/``{target}`` as quoted schema names and ``{notify_channel}`` into SQL text; with
    a data type, also its ``{record_table}`` and ``{record_key}`` (the shared snapshot step's files).

    Plain ``str.replace`` rather than ``str.format`` so braces in JSON path expressions stay as written.
    """
    text = (
        text.replace("{landing}", quote_ident(schemas.landing))
        .replace("{target}", quote_ident(schemas.target))
        .replace("{notify_channel}", NOTIFY_CHANNEL)
    )
    if spec is not None:
        text = text.replace("{record_table}", quote_ident(spec.record_table)).replace(
            "{record_key}", quote_ident(spec.record_key)
        )
    return text


def load_sql(name: str, schemas: Schemas, spec: DataTypeSpec | None = None) -> str:
    """Return ``sql/<name>`` filled by :func:`fill`."""
    return fill(_read(name), schemas, spec)


def split_statements(sql: str) -> list[str]:
    """Split SQL text into its statements, each with its comments; parts holding only comments are dropped.

    ``sqlparse.split`` tokenizes: a ``;`` inside a string, a quoted identifier, a comment or a
    ``$tag$ ... $tag$`` body does not end a statement, and statements need no blank line between them.
    """
    return [
        statement
        for statement in (part.strip() for part in sqlparse.split(sql))
        if sqlparse.format(statement, strip_comments=True).strip()
    ]


def load_statements(name: str, schemas: Schemas, spec: DataTypeSpec | None = None) -> list[str]:
    """The statements of ``sql/<name>`` (see :func:`load_sql`), in order, to run one by one."""
    return split_statements(load_sql(name, schemas, spec))
