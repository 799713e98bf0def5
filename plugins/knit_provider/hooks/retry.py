"""When to try a Knit call again and how long to wait: one policy, one clock, both injectable.

The hook asks this module three questions: is this failure transient, how long should it wait
(``Retry-After`` first, else exponential backoff with jitter), and is there budget left (attempts
and total time). Tests hand in a fake :class:`Clock` so retry timing is checked without sleeping.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Protocol

from knit_provider.backoff import backoff_delay
from knit_provider.exceptions import KnitConfigurationError

log = logging.getLogger(__name__)

# RFC 9110's delay-seconds is 1*DIGIT, ASCII only: str.isdigit() also takes "²" and "١٢".
_DELAY_SECONDS = re.compile(r"[0-9]+")
# Longer than any sensible retry budget: the hook then gives up at once, naming the wait, instead
# of printing or sleeping a number with hundreds of digits.
MAX_RETRY_AFTER_SECONDS = 86_400.0
# A Retry-After wait is stretched by up to this share of itself, at random (see RetryPolicy.wait).
RETRY_AFTER_SPREAD = 0.5


class Clock(Protocol):
    """The time sources a retry loop needs; swapped for a fake one in tests."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for budgets."""

    def now(self) -> datetime:
        """Aware UTC wall time, for ``Retry-After`` given as an HTTP date."""

    def sleep(self, seconds: float) -> None:
        """Wait before the next attempt."""


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def is_transient_status(status_code: int) -> bool:
    """Say whether an HTTP status is worth retrying: 429 (slow down) and every 5xx (Knit's side)."""
    return status_code == 429 or status_code >= 500


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Turn a ``Retry-After`` header (delay in seconds, or an HTTP date) into seconds from ``now``.

    Returns None when the header is absent or unreadable (with a log line), so the caller falls
    back to backoff instead of failing on a malformed hint. A delay above a day is read as a day.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        digits = text.lstrip("0") or "0"
        # Seven digits or more is over a day anyway (and 400 digits would read as infinity).
        return MAX_RETRY_AFTER_SECONDS if len(digits) > 6 else min(float(digits), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        log.warning("Ignoring Retry-After %r: neither ASCII delay-seconds nor an HTTP date; backing off instead", value)
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are GMT; a date without a zone is read the same way.
        when = when.replace(tzinfo=timezone.utc)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a call gets and how long it may take in total, waits included.

    :param max_attempts: attempts in all (1 means no retry).
    :param max_elapsed: seconds from the first attempt after which no new attempt starts; a
        ``Retry-After`` that would end beyond it fails at once instead of waiting in vain.
    :param backoff_base: wait before the first retry, in seconds; doubled for each further retry.
    :param backoff_max: the longest backoff wait, in seconds.
    """

    max_attempts: int = 5
    max_elapsed: float = 300.0
    backoff_base: float = 1.0
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise KnitConfigurationError(f"max_attempts must be at least 1, got {self.max_attempts}.")
        if self.max_elapsed <= 0:
            raise KnitConfigurationError(
                f"max_retry_seconds must be a positive number of seconds, got {self.max_elapsed}."
            )
        if self.backoff_base <= 0 or self.backoff_max < self.backoff_base:
            raise KnitConfigurationError(
                f"backoff must satisfy 0 < backoff_base <= backoff_max, got {self.backoff_base} and {self.backoff_max}."
            )

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Wait before retry ``retry_number`` (1 for the first): the provider's one schedule.

        Exponential with "equal jitter" (:func:`knit_provider.backoff.backoff_delay`): the wait never
        collapses to zero, and many workers failing together do not retry in lockstep.
        """
        return backoff_delay(retry_number, self.backoff_base, self.backoff_max, rng)

    def wait(self, retry_after: float | None, retry_number: int, rng: random.Random) -> float:
        """Wait before retry ``retry_number``: ``Retry-After`` when Knit sent one, else :meth:`backoff`.

        A mapped DAG starts hundreds of syncs at once, and Knit's 429 tells them all the same
        ``Retry-After``; honoured to the second, they would all come back in the same second. The
        header is a minimum (RFC 9110), so each caller waits it plus a random share of up to
        ``RETRY_AFTER_SPREAD`` of it (at least ``backoff_base``). A wait that is past the budget
        anyway is returned as Knit gave it, so the error names Knit's figure.
        """
        if retry_after is None:
            return self.backoff(retry_number, rng)
        if retry_after >= self.max_elapsed:
            return retry_after
        return retry_after + rng.uniform(0, max(self.backoff_base, retry_after * RETRY_AFTER_SPREAD))
