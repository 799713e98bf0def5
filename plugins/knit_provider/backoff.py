"""How long to wait before trying again: one schedule for every retry loop of the provider.

Exponential (doubling from ``initial`` up to ``maximum``) with "equal jitter": half of each wait is
fixed and half random, so a wait never collapses to nothing and many callers failing together (a
mapped DAG's syncs, a receiver's writers, the waiters of a restarted database) do not come back in
lockstep. Used by the Knit hook's :class:`~knit_provider.hooks.retry.RetryPolicy` (which adds
``Retry-After`` and a time budget), the triggers' listener reconnect, the asset watcher, and the
receiver's reconnects and deadlock retries.

Why not tenacity (installed with Airflow): these loops are not "call f until it succeeds". The
listener and the receiver's writers keep state between attempts (a connection, waiters to wake, a
queue to answer 503 meanwhile), the watcher runs for ever and resets after each success, and the
hook's budget and ``Retry-After`` are already pinned by tests. What they share is the schedule, and
that is this module.
"""

from __future__ import annotations

import random

# Jitter of callers that pass no generator of their own.
_RNG = random.Random()


def backoff_delay(retry_number: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Wait before retry ``retry_number`` (1 for the first): in ``[ceiling / 2, ceiling]``.

    ``ceiling`` is ``initial * 2 ** (retry_number - 1)``, capped at ``maximum``.
    """
    exponent = min(retry_number - 1, 64)  # 2**64 times anything sensible is past any cap
    ceiling = min(maximum, initial * 2.0**exponent)
    return ceiling / 2 + (rng or _RNG).uniform(0, ceiling / 2)


class Backoff:
    """The same schedule for a loop that counts its own failures: ``next_delay()`` after each, ``reset()`` on success.

    :param initial: ceiling of the first wait, in seconds.
    :param maximum: the longest ceiling, in seconds.
    :param rng: randomness for the jitter (tests pass a seeded one).
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"backoff must satisfy 0 < initial <= maximum, got {initial} and {maximum}.")
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        self.failures += 1
        return backoff_delay(self.failures, self.initial, self.maximum, self._rng)

    def reset(self) -> None:
        """An attempt succeeded: the next failure waits the shortest time again."""
        self.failures = 0
