"""The standalone receiver's metrics endpoint: exact counts after a known mix of requests, one process or several."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from receiver_helpers import ReceiverProcess, event, new_id, signed, wait_until

from knit_devtools.embedded_postgres import free_port
from knit_provider.webhook.stats import REJECTION_REASONS

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
MAX_BODY = 10_000


def _scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("knit_webhook_")
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _mix(url: str) -> list[int]:
    """Requests whose counts are known; every one on a connection of its own (spread over the workers)."""
    documents = [event() for _ in range(3)]
    bodies = [orjson.dumps(document) for document in documents]
    not_an_event = orjson.dumps({"unique": new_id()})  # signed, so kept as a dead letter
    too_large = orjson.dumps(event(padding="x" * MAX_BODY))
    requests = [
        *(("POST", "/webhook", body, signed(body)) for body in bodies),  # 3 new
        *(("POST", "/webhook", body, signed(body)) for body in bodies[:2]),  # 2 duplicates
        ("POST", "/webhook", bodies[2], {**signed(bodies[2]), "X-Knit-Signature": "forged"}),
        ("POST", "/webhook", not_an_event, signed(not_an_event)),
        ("POST", "/webhook", too_large, signed(too_large)),
        ("POST", "/elsewhere", b"{}", {}),
        ("GET", "/" + "a" * 9000, b"", {}),  # past the URL limit
    ]
    return [
        httpx.request(method, url + path, content=body, headers=headers, timeout=10).status_code
        for method, path, body, headers in requests
    ]


def _spawned_workers(pid: int) -> list[psutil.Process]:
    """The live worker processes of the supervisor ``pid`` (not multiprocessing's resource tracker)."""
    workers = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.Error):  # gone, or a zombie not reaped yet
            if "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
    return workers


@pytest.mark.parametrize("workers", [1, 2])
def test_counts_after_a_known_mix(workers: int, landing_url: str, tmp_path: Path) -> None:
    port = free_port()
    receiver = ReceiverProcess(
        landing_url,
        tmp_path / "receiver.log",
        "--workers",
        str(workers),
        "--writers",
        "1",
        "--max-body-bytes",
        str(MAX_BODY),
        "--metrics-port",
        str(port),
    )
    try:
        receiver.wait_ready()
        before = _scrape(port)
        statuses = _mix(receiver.url)
        after = _scrape(port)

        def delta(name: str, **labels: str) -> float:
            return _value(after, name, **labels) - _value(before, name, **labels)

        assert statuses[:5] == [200] * 5
        assert statuses[5:] == [401, statuses[6], 413, 404, 414]
        assert {
            result: delta("knit_webhook_events_total", result=result)
            for result in ("new", "duplicate", "dead_lettered")
        } == {"new": 3, "duplicate": 2, "dead_lettered": 1}
        answered = {str(status): float(count) for status, count in collections.Counter(statuses).items()}
        assert {status: delta("knit_webhook_responses_total", status=status) for status in answered} == answered
        assert {reason: delta("knit_webhook_rejections_total", reason=reason) for reason in REJECTION_REASONS} == {
            reason: (1.0 if reason in ("signature", "size", "url") else 0.0) for reason in REJECTION_REASONS
        }
        assert delta("knit_webhook_batch_size_sum") == 6  # events and dead letters written
        batches = delta("knit_webhook_batch_size_count")
        assert 1 <= batches <= 6
        assert delta("knit_webhook_commit_seconds_count") == batches
        wait_until(lambda: _value(_scrape(port), "knit_webhook_open_connections") == 0, 10, "connections to close")
        assert _value(after, "knit_webhook_queue_depth") == 0
        # What the readiness probe no longer tells whoever asks: one writer per worker, signatures verified.
        # (Scraped anew once every worker is up: one worker may serve the whole mix while another still starts,
        # and a worker reports its gauges from its import, signing as 0 until its server is built.)
        wait_until(lambda: _value(_scrape(port), "knit_webhook_writers_connected") == workers, 10, "the writers")
        assert _value(_scrape(port), "knit_webhook_signatures_verified") == 1

        if workers > 1:
            # A worker that dies takes its gauges with it, but what it counted stays in the sum.
            old = _spawned_workers(receiver.proc.pid)
            assert len(old) == workers
            os.kill(old[0].pid, signal.SIGKILL)
            wait_until(lambda: len(set(_spawned_workers(receiver.proc.pid)) - set(old)) == 1, 30, "a new worker")
            receiver.wait_ready()
            restarted = _scrape(port)
            for name, labels in (
                ("knit_webhook_events_total", {"result": "new"}),
                ("knit_webhook_rejections_total", {"reason": "url"}),
            ):
                assert _value(restarted, name, **labels) == _value(after, name, **labels)
    finally:
        receiver.stop()
