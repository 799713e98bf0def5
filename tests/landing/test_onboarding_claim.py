"""Two onboarding DAG runs claiming the same integration at once, on two real Postgres connections:
exactly one wins, and the other sees no claim (``sql/landing/onboarding_claim.sql``)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg2
import pytest
from knit_landing_helpers import Lander

from knit_devtools.services import wait_until
from knit_provider.landing.integrations import claim_onboarding
from knit_provider.settings import Schemas

SCHEMAS = Schemas()
DAY = 86_400.0
ROUNDS = 20  # of the barrier race: each a fresh integration
_ids = itertools.count()


@pytest.fixture
def connections(landing_url: str) -> Iterator[tuple[Any, Any]]:
    first, second = psycopg2.connect(landing_url), psycopg2.connect(landing_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _activated(url: str) -> str:
    """A newly activated integration, landed the way the receiver lands it."""
    integration = f"int-race-{next(_ids)}"
    lander = Lander(url, integration_id=integration)
    try:
        lander.land(
            [
                {
                    "eventId": f"act-{integration}",
                    "eventType": "app.integration.activate",
                    "eventData": {"integrationId": integration, "activatedAt": "1700000000000"},
                }
            ]
        )
    finally:
        lander.close()
    return integration


def _claim(conn: Any, integration: str, dag_run_id: str) -> list[str]:
    with conn.cursor() as cur:
        return claim_onboarding(cur, SCHEMAS, [integration], dag_run_id=dag_run_id, stale_after=DAY)


def _claimed_by(url: str, integration: str) -> str | None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT onboarding_dag_run_id FROM knit_landing.integrations WHERE integration_id = %s", (integration,)
        )
        value: str | None = cur.fetchone()[0]
    conn.close()
    return value


def _blocked_behind(first: Any, second: Any) -> Callable[[], bool]:
    def check() -> bool:
        with first.cursor() as cur:  # first's own open transaction may read pg_stat_activity
            cur.execute("SELECT %s = ANY(pg_blocking_pids(%s))", (first.get_backend_pid(), second.get_backend_pid()))
            return bool(cur.fetchone()[0])

    return check


@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
def test_a_second_claim_waits_for_the_first_and_sees_its_outcome(
    landing_url: str, connections: tuple[Any, Any], first_ends: str
) -> None:
    first, second = connections
    integration = _activated(landing_url)
    assert _claim(first, integration, "run-first") == [integration]  # its transaction stays open
    with ThreadPoolExecutor(1) as pool:
        waiting: Future[list[str]] = pool.submit(_claim, second, integration, "run-second")
        # The second claim is running and holds on the row lock the first one took: a real race.
        wait_until(_blocked_behind(first, second), timeout=15, what="the second claim to wait on the row lock")
        assert not waiting.done()
        getattr(first, first_ends)()
        second_claimed = waiting.result(timeout=15)
    second.commit()
    if first_ends == "commit":
        assert second_claimed == [], "the loser sees no claim"
        assert _claimed_by(landing_url, integration) == "run-first"
    else:
        assert second_claimed == [integration], "a claim rolled back leaves the integration to the other run"
        assert _claimed_by(landing_url, integration) == "run-second"


def test_two_runs_claiming_at_the_same_moment_make_one_winner(landing_url: str, connections: tuple[Any, Any]) -> None:
    barrier = threading.Barrier(2, timeout=15)

    def claim_at_once(conn: Any, integration: str, dag_run_id: str) -> list[str]:
        barrier.wait()
        claimed = _claim(conn, integration, dag_run_id)
        conn.commit()
        return claimed

    with ThreadPoolExecutor(2) as pool:
        for _ in range(ROUNDS):
            integration = _activated(landing_url)
            runs = [
                pool.submit(claim_at_once, conn, integration, name)
                for conn, name in zip(connections, ("run-a", "run-b"), strict=True)
            ]
            claims = {name: run.result(timeout=15) for name, run in zip(("run-a", "run-b"), runs, strict=True)}
            winners = [name for name, claimed in claims.items() if claimed]
            assert len(winners) == 1, claims
            assert claims[winners[0]] == [integration]
            assert _claimed_by(landing_url, integration) == winners[0]
