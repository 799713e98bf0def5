"""SQL files are split into statements by reading the SQL, not by how the file is laid out."""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg2
import pytest

from knit_provider.data_types import known
from knit_provider.settings import Schemas
from knit_provider.sql import load_sql, split_statements

SCHEMAS = Schemas(landing="sql_split_landing", target="sql_split_target")

# Laid out as a person might write it: no blank lines between statements, one statement over
# several lines, two on one line, ';' inside strings, identifiers, comments and a $$ body that
# also holds blank lines, and a comment after the last statement.
AWKWARD = """-- a comment; with a semicolon
CREATE TEMP TABLE split_t (id int, note text);
INSERT INTO split_t
    VALUES (%(first)s,
            'a; b');INSERT INTO split_t VALUES (2, 'it''s;'); /* ; */
CREATE FUNCTION pg_temp.split_f(n int) RETURNS int LANGUAGE plpgsql AS $body$
DECLARE
    total int := 0;

BEGIN
    -- a ; in a comment of the body

    SELECT count(*) INTO total FROM split_t WHERE note <> ';';
    RETURN total + n;
END
$body$;
SELECT "split;col" FROM (SELECT pg_temp.split_f(%(first)s) AS "split;col") s
-- trailing comment; nothing after it
"""


def test_awkward_layout_splits_into_its_statements() -> None:
    statements = split_statements(AWKWARD)
    assert [s.split("\n")[-1][:30] for s in statements] == [
        "CREATE TEMP TABLE split_t (id ",
        "            'a; b');",
        "INSERT INTO split_t VALUES (2,",
        "$body$;",
        "-- trailing comment; nothing a",
    ]
    assert "RETURN total + n;" in statements[3]
    assert split_statements("SELECT 1;\n-- only a comment; no statement\n/* nor here */\n") == ("SELECT 1;",)


def test_each_statement_runs_with_parameters(pg_url: str) -> None:
    conn = psycopg2.connect(pg_url)
    try:
        with conn, conn.cursor() as cur:
            rows = []
            for statement in split_statements(AWKWARD):
                cur.execute(statement, {"first": 1})
                rows.append(cur.rowcount)
            assert cur.fetchone() == (2 + 1,)
        assert rows[1:3] == [1, 1]
    finally:
        conn.close()


def _files(folder: Traversable, prefix: str = "") -> list[str]:
    """Every ``.sql`` file under ``folder``, at any depth, as paths relative to it."""
    found = []
    for item in folder.iterdir():
        if item.is_dir() and item.name != "__pycache__":
            found += _files(item, f"{prefix}{item.name}/")
        elif item.name.endswith(".sql"):
            found.append(f"{prefix}{item.name}")
    return sorted(found)


def _packaged() -> list[tuple[str, str]]:
    """Every SQL text the provider runs: its own files, and each known data type's, filled for SCHEMAS."""
    texts = [(name, load_sql(name, SCHEMAS)) for name in _files(resources.files("knit_provider.sql"))]
    for spec in known():
        texts += [(f"{spec.name}/{name}", spec.load_sql(name, SCHEMAS)) for name in _files(spec.sql)]
    return texts


@pytest.mark.parametrize(("name", "text"), _packaged(), ids=[name for name, _ in _packaged()])
def test_every_packaged_file_splits_without_losing_text(name: str, text: str) -> None:
    """Whatever is run statement by statement today or later: the statements are the file, in order."""
    statements = split_statements(text)
    assert statements
    squeeze = re.compile(r"\s+")
    assert squeeze.sub("", "".join(statements)) in squeeze.sub("", text)
    assert all(not s.rstrip().endswith(";;") for s in statements)


def test_dollar_quoted_functions_of_a_landing_function_file_stay_whole() -> None:
    statements = split_statements(load_sql("landing/functions/partitions.sql", SCHEMAS))
    functions = [s for s in statements if "CREATE OR REPLACE FUNCTION" in s and "plpgsql" in s]
    assert functions
    for function in functions:
        tag = re.search(r"AS (\$\w*\$)", function)
        assert tag is not None
        assert function.count(tag.group(1)) == 2
