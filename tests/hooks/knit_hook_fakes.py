"""Shared test values for hook tests: a Knit connection's secrets and a clock that never really sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

API_KEY = "knit-test-key-5f0c9d2e7b1a"
WEBHOOK_SECRET = "whsec-test-3c8e1f7a9b2d"
BASE = "http://knit.test:8765"


class FakeClock:
    """A clock that only moves when the code under test sleeps; records every wait."""

    def __init__(self) -> None:
        self.t = 0.0
        self.start = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
