"""The one retry schedule: doubling to a cap, half fixed and half random, reset after a success."""

from __future__ import annotations

import random

import pytest

from knit_provider.backoff import Backoff, backoff_delay


def test_each_wait_lies_between_half_its_ceiling_and_the_ceiling() -> None:
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (10_000, 30.0)]:
        waits = [backoff_delay(retry, 0.5, 30.0, rng) for _ in range(300)]
        assert ceiling / 2 <= min(waits) < ceiling / 2 + ceiling / 20  # the random half is used ...
        assert ceiling - ceiling / 20 < max(waits) <= ceiling  # ... all of it


def test_a_loop_backs_off_while_it_fails_and_starts_over_after_a_success() -> None:
    backoff = Backoff(initial=1.0, maximum=4.0, rng=random.Random(1))
    ceilings = [1.0, 2.0, 4.0, 4.0]
    for ceiling in ceilings:
        assert ceiling / 2 <= backoff.next_delay() <= ceiling
    assert backoff.failures == len(ceilings)
    backoff.reset()
    assert backoff.next_delay() <= 1.0


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_a_schedule_that_cannot_work_is_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="0 < initial <= maximum"):
        Backoff(initial=initial, maximum=maximum)
