"""The one reader of templated values: lists, absent values, times and mappings, as every task reads them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from knit_provider.exceptions import KnitInputError
from knit_provider.inputs import optional_text, parse_list, parse_mapping, parse_time, required_time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a", "b"], ["a", "b"]),
        (("a", " b "), ["a", "b"]),
        (["a", None, "", "None", "a"], ["a"]),
        ("['a', 'b', 'a']", ["a", "b"]),  # a list rendered without native objects: its repr
        ('["a", "b"]', ["a", "b"]),  # through | tojson
        ("a, b,,c", ["a", "b", "c"]),
        ("a", ["a"]),
        (None, []),
        ("", []),
        ("  ", []),
        ("None", []),
        ("null", []),
        ("[]", []),
    ],
)
def test_lists_in_every_rendered_form(value: Any, expected: list[str]) -> None:
    assert parse_list(value, "ids") == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ([1, "a"], "ids must be a list of strings, got [1, 'a']: 1 is not a string."),
        ({"a": 1}, "ids must be a list of strings, got dict"),
        ("['a'", "ids=\"['a'\" looks like a list but cannot be read"),
        ('["a", 2]', "ids must be a list of strings"),
    ],
)
def test_unreadable_lists_name_the_value(value: Any, says: str) -> None:
    with pytest.raises(KnitInputError) as raised:
        parse_list(value, "ids")
    assert says in str(raised.value)


def test_absent_text() -> None:
    assert [optional_text(v) for v in (None, "", " None ", "NULL", "null")] == [None] * 5
    assert optional_text(" run-1 ") == "run-1"
    assert optional_text(42) == "42"


def test_times_must_carry_a_zone() -> None:
    aware = datetime(2025, 5, 1, 10, tzinfo=timezone.utc)
    assert parse_time(aware, "t") is aware
    assert parse_time("2025-05-01T10:00:00Z", "t") == aware
    assert parse_time("2025-05-01T15:30:00+05:30", "t") == aware
    assert parse_time("None", "t") is None
    assert parse_time("", "t") is None
    with pytest.raises(KnitInputError, match="t='2025-05-01T10:00:00' has no time zone"):
        parse_time("2025-05-01T10:00:00", "t")
    with pytest.raises(KnitInputError, match="has no time zone"):
        parse_time(aware.replace(tzinfo=None), "t")
    with pytest.raises(KnitInputError, match="t='yesterday' is not an ISO-8601 time"):
        parse_time("yesterday", "t")
    with pytest.raises(KnitInputError, match="until is empty"):
        required_time("None", "until")
    assert required_time("2025-05-01T11:00:00+01:00", "until") == aware
    assert required_time(aware + timedelta(0), "until") == aware


def test_mappings_in_every_rendered_form() -> None:
    expected = {"sync_job_id": "j", "started_at": None}
    assert parse_mapping(expected, "sync") == expected
    assert parse_mapping('{"sync_job_id": "j", "started_at": null}', "sync") == expected
    assert parse_mapping("{'sync_job_id': 'j', 'started_at': None}", "sync") == expected
    assert parse_mapping("None", "sync") == {}
    assert parse_mapping(None, "sync") == {}
    with pytest.raises(KnitInputError, match=r"sync='start_sync' is not a mapping.*Pass the XCom"):
        parse_mapping("start_sync", "sync", " Pass the XCom.")


def test_a_refusal_fails_the_task_without_retries_and_reads_as_a_bad_argument() -> None:
    """AirflowFailException for tasks; ValueError for the CLIs, which print it as ``error: ...``."""
    with pytest.raises(AirflowFailException, match="ids must be a list"):
        parse_list(3, "ids")
    with pytest.raises(ValueError, match="not an ISO-8601 time"):
        parse_time("soon", "t")
