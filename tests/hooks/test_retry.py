"""The retry policy on its own: Retry-After parsing, backoff bounds and the checks on its settings."""

from __future__ import annotations

import logging
import random
from collections import Counter
from datetime import datetime, timezone

import pytest

from knit_provider.exceptions import KnitConfigurationError
from knit_provider.hooks.retry import MAX_RETRY_AFTER_SECONDS, RetryPolicy, is_transient_status, parse_retry_after

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("007", 7.0),
        ("Tue, 01 Jan 2030 12:01:00 GMT", 60.0),
        ("Tue, 01 Jan 2030 11:00:00 GMT", 0.0),  # already past: retry now, never a negative wait
        # longer than a day reads as a day, whatever its length (float() of 400 digits is infinity)
        ("86400", MAX_RETRY_AFTER_SECONDS),
        ("86401", MAX_RETRY_AFTER_SECONDS),
        ("9" * 400, MAX_RETRY_AFTER_SECONDS),
        ("0" * 40 + "9" * 5000, MAX_RETRY_AFTER_SECONDS),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_SECONDS),
        (None, None),
        ("", None),
    ],
)
def test_parse_retry_after(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    "header",
    [
        "²",  # str.isdigit() is true, float() raises
        "١٢",  # Arabic-Indic twelve: isdigit() true and float() reads 12, yet not RFC 9110 digits
        "\uff15",  # fullwidth five
        "-1",
        "1.5",
        "1e3",
        "soon",
        "5 s",
    ],
)
def test_a_header_that_is_neither_ascii_seconds_nor_a_date_is_ignored_with_a_log_line(header, caplog):
    caplog.set_level(logging.WARNING, logger="knit_provider.hooks.retry")
    assert parse_retry_after(header, NOW) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"Ignoring Retry-After {header!r}: neither ASCII delay-seconds nor an HTTP date; backing off instead"
    ]


@pytest.mark.parametrize(
    ("status", "transient"),
    [(429, True), (500, True), (503, True), (599, True), (400, False), (401, False), (404, False), (200, False)],
)
def test_transient_statuses(status, transient):
    assert is_transient_status(status) is transient


def test_backoff_doubles_up_to_the_cap_and_never_drops_below_half():
    policy = RetryPolicy(backoff_base=2.0, backoff_max=10.0)
    rng = random.Random(3)
    for retry, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)]:
        waits = [policy.backoff(retry, rng) for _ in range(200)]
        assert min(waits) >= ceiling / 2
        assert max(waits) <= ceiling


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_elapsed": 0}, "max_retry_seconds"),
        ({"backoff_base": 0}, "backoff"),
        ({"backoff_base": 5, "backoff_max": 1}, "backoff"),
    ],
)
def test_policy_refuses_settings_that_cannot_work(kwargs, complaint):
    with pytest.raises(KnitConfigurationError, match=complaint):
        RetryPolicy(**kwargs)


def test_a_shared_retry_after_is_spread_over_half_of_itself():
    """500 callers told ``Retry-After: 10`` at once come back over 10-15 s, not all at 10 s."""
    policy, rng = RetryPolicy(), random.Random(3)
    waits = [policy.wait(10.0, 1, rng) for _ in range(500)]
    assert min(waits) >= 10.0
    assert max(waits) <= 15.0
    per_second = Counter(int(wait) for wait in waits)
    assert set(per_second) == {10, 11, 12, 13, 14}
    assert max(per_second.values()) < 150  # about 100 a second, not 500 in one


def test_a_retry_after_past_the_budget_is_kept_as_knit_gave_it():
    assert RetryPolicy(max_elapsed=60).wait(3600.0, 1, random.Random(1)) == 3600.0
    assert RetryPolicy(max_elapsed=60).wait(0.0, 1, random.Random(1)) <= 1.0
