"""Faults on request: duplicates, shuffling, late re-delivery, drops, slow and invalid bodies, extras."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sim_receiver import API_KEY, Receiver, serve, signature_valid

from knit_simulator.testing import SimulatorProcess, run_simulator


@contextmanager
def _world(args: Sequence[str], applications: int = 40) -> Iterator[tuple[SimulatorProcess, Receiver]]:
    with (
        serve() as receiver,
        run_simulator(
            applications=applications, seed=3, api_key=API_KEY, args=["--retry-base-delay", "0.01", *args]
        ) as sim,
    ):
        yield sim, receiver


def _initial(sim: SimulatorProcess, receiver: Receiver, integration: str = "int-f") -> tuple[str, dict[str, Any]]:
    job_id = sim.start_sync(integration, receiver.url)["data"]["syncJobId"]
    return job_id, sim.wait_job(job_id, timeout=60)["runs"][-1]


def _record_ids_in_arrival_order(receiver: Receiver, run_id: str) -> list[str]:
    return [e["recordId"] for e in receiver.events_of_run(run_id) if e["eventType"].startswith("record.")]


def test_duplicates_repeat_the_same_body_and_counts_stay_true() -> None:
    with _world(["--duplicate-share", "0.5"]) as (sim, receiver):
        _, run = _initial(sim, receiver)
        bodies = Counter(d.body for d in receiver.consumed())
        repeated = [body for body, n in bodies.items() if n > 1]
        assert len(repeated) == run["duplicatesSent"] > 5
        assert all(json.loads(body)["eventType"] == "record.new" for body in repeated)
        final = receiver.consumed()[-1].event
        assert final is not None
        assert final["eventType"] == "sync.events.allConsumed"  # after the duplicates too
        assert final["eventData"]["emitted"] == final["eventData"]["consumed"] == 40


def test_shuffle_changes_the_order_not_the_content() -> None:
    orders = []
    for args in ([], ["--shuffle"]):
        with _world(["--concurrency", "1", *args]) as (sim, receiver):
            _, run = _initial(sim, receiver)
            orders.append(_record_ids_in_arrival_order(receiver, run["syncRunId"]))
    plain, shuffled = orders
    assert plain == sorted(plain)
    assert shuffled != sorted(shuffled)
    assert sorted(shuffled) == plain


def test_late_redelivery_resends_old_run_events_during_the_next_run() -> None:
    with _world(["--late-redelivery", "3"]) as (sim, receiver):
        job_id, first = _initial(sim, receiver)
        first_bodies = {d.body for d in receiver.consumed()}
        mark = len(receiver.snapshot())
        second = sim.wait_run(sim.trigger_run(job_id)["syncRunId"], timeout=60)
        later = [d for d in receiver.snapshot()[mark:] if d.answered == 200]
        late = [d for d in later if d.event and d.event["syncRunId"] == first["syncRunId"]]
        assert len(late) == second["lateRedeliveriesSent"] == 3
        assert all(d.body in first_bodies for d in late)  # the same event, byte for byte
        end = next(i for i, d in enumerate(later) if d.event and d.event["eventType"] == "sync.events.allConsumed")
        assert all(later.index(d) < end for d in late)


def test_dropped_connections_are_retried_and_nothing_is_lost() -> None:
    with _world(["--drop-share", "0.3"]) as (sim, receiver):
        _, run = _initial(sim, receiver)
        cut = [d for d in receiver.snapshot() if not d.complete_body]
        assert run["dropped"] >= len(cut) > 0  # a cut may also land before the receiver reads a byte
        assert run["consumed"] == run["emitted"] == 40
        assert len(_record_ids_in_arrival_order(receiver, run["syncRunId"])) == 40


def test_invalid_json_bodies_are_signed_extras() -> None:
    with _world(["--invalid-json-share", "0.3"]) as (sim, receiver):
        _, run = _initial(sim, receiver)
        broken = [d for d in receiver.snapshot() if d.event is None]
        assert len(broken) == run["invalidJsonSent"] > 3
        assert all(signature_valid(d.body, d.headers["x-knit-signature"], API_KEY) for d in broken)
        assert run["consumed"] == run["emitted"] == 40


def test_slow_deliveries_pause_between_headers_and_body() -> None:
    with _world(["--slow-ms", "300", "--slow-share", "1"], applications=4) as (sim, receiver):
        _initial(sim, receiver)
        assert all(d.body_seconds >= 0.2 for d in receiver.snapshot())


def test_progress_events_send_an_incomplete_processed_first() -> None:
    with _world(["--progress-events", "--concurrency", "1"]) as (sim, receiver):
        _, run = _initial(sim, receiver)
        processed = [
            e["eventData"]
            for e in receiver.events_of_run(run["syncRunId"])
            if e["eventType"] == "sync.events.processed"
        ]
        assert [p["complete"] for p in processed] == [False, True]
        assert processed[0]["emitted"] < processed[1]["emitted"] == 40


def test_scheduler_starts_delta_runs_by_itself() -> None:
    with _world(["--frequency-seconds", "standard=0.2"]) as (sim, receiver):
        _initial(sim, receiver)
        receiver.wait_for(
            lambda ds: any(
                d.event and d.event["syncType"] == "delta_sync" and d.event["eventType"] == "sync.events.allConsumed"
                for d in ds
            )
        )
