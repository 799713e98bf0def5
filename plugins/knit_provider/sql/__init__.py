"""SQL files of the provider, loaded by name with the schema names filled in as quoted identifiers.

A file is run whole where the driver allows it and nothing is wanted per statement: the migrations and
``normalize/schema.sql`` (no parameters: both drivers send the text as one simple query, however many
statements it holds) and ``normalize/finish.sql`` (psycopg2 fills the parameters in client side). A file
whose statements are run, counted or timed one by one goes through :func:`split_statements`, which
reads the SQL (quotes, comments, dollar-quoted bodies) instead of relying on how the file is laid out.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

import sqlparse

from knit_provider.settings import NOTIFY_CHANNEL, Schemas, quote_ident

if TYPE_CHECKING:
    from knit_provider.data_types.spec import DataTypeSpec


_texts: dict[tuple[str, str], str] = {}


def read_file(folder: Traversable, name: str) -> str:
    """The text of ``folder/name``, read once per process (the provider's SQL, or a data type's)."""
    key = (str(folder), name)
    if key not in _texts:
        _texts[key] = folder.joinpath(name).read_text(encoding="utf-8")
    return _texts[key]


def digest(text: str) -> str:
    """What the schema marks record of applied DDL: the text's SHA-256, in hex."""
    return hashlib.sha256(text.encode()).hexdigest()


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
    return fill(read_file(resources.files(__package__), name), schemas, spec)


@functools.lru_cache(maxsize=512)
def split_statements(sql: str) -> tuple[str, ...]:
    """Split SQL text into its statements, each with its comments; parts holding only comments are dropped.

    ``sqlparse.split`` tokenizes: a ``;`` inside a string, a quoted identifier, a comment or a
    ``$tag$ ... $tag$`` body does not end a statement, and statements need no blank line between them.
    Cached by text: tokenizing a step costs 0.1-0.2 s of CPU, more than normalizing a small run.
    """
    return tuple(
        statement
        for statement in (part.strip() for part in sqlparse.split(sql))
        if sqlparse.format(statement, strip_comments=True).strip()
    )


def load_statements(name: str, schemas: Schemas, spec: DataTypeSpec | None = None) -> tuple[str, ...]:
    """The statements of ``sql/<name>`` (see :func:`load_sql`), in order, to run one by one."""
    return split_statements(load_sql(name, schemas, spec))
