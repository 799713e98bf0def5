"""How fast the simulator delivers: an initial sync pushed to a receiver that only answers 200.

The issue asks for at least 3,000 events/s on this 2-core machine, so the simulator is never the
bottleneck of the pipeline. The receiver (``knit_simulator.sink``: raw asyncio, answers 200) runs
in its own process, as a real receiver would. The baseline, measured in the same run, is the
naive sender: build, sign and POST one event at a time over one keep-alive connection.

Quick mode delivers 50,000 applications; ``full=True`` delivers 1,000,000.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

import orjson

from knit_simulator.dataset import IntegrationData
from knit_simulator.render import Renderer
from knit_simulator.signing import Signer
from knit_simulator.testing import run_simulator

TARGET_EVENTS_PER_S = 3000
API_KEY = "bench-api-key"


def _start_sink() -> tuple[subprocess.Popen[bytes], str]:
    sink = subprocess.Popen([sys.executable, "-m", "knit_simulator.sink"], stdout=subprocess.PIPE)
    assert sink.stdout is not None
    line = sink.stdout.readline().decode().strip()
    if not line.startswith("sink listening on "):
        sink.kill()
        raise RuntimeError(f"sink did not start: {line!r}")
    return sink, line.rsplit(" ", 1)[1]


def _sink_count(url: str) -> int:
    with urllib.request.urlopen(url + "/count", timeout=10) as response:
        return int(json.loads(response.read())["requests"])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a process used so far (Linux /proc): a figure other load cannot inflate much."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _simulator_run(applications: int, sink_url: str, concurrency: int) -> dict[str, Any]:
    before = _sink_count(sink_url)
    with run_simulator(
        applications=applications, seed=1, api_key=API_KEY, args=["--concurrency", str(concurrency)]
    ) as sim:
        cpu_before = _cpu_seconds(sim.process.pid)
        answer = sim.start_sync("bench-integration", sink_url + "/knit")
        job = sim.wait_job(answer["data"]["syncJobId"], timeout=3600)
        cpu = _cpu_seconds(sim.process.pid) - cpu_before
    run = job["runs"][-1]
    seconds = (run["completedAt"] - run["startedAt"]) / 1000
    delivered = _sink_count(sink_url) - before
    if run["state"] != "completed" or run["consumed"] != applications or delivered != applications + 2:
        raise RuntimeError(f"run incomplete or miscounted: {run}, sink saw {delivered}")
    return {"seconds": seconds, "events": run["emitted"], "attempts": run["deliveryAttempts"], "cpu": cpu}


def _baseline(events: int, sink_url: str) -> dict[str, Any]:
    """The naive sender: render, sign, POST, wait for the answer, next."""
    data = IntegrationData(1, "bench-baseline", events)
    renderer = Renderer(data)
    signer = Signer(API_KEY.encode())
    host, port = sink_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    sizes = 0
    started = time.perf_counter()
    for index in range(events):
        body = orjson.dumps(
            {
                "eventId": f"ev_{index}",
                "eventType": "record.new",
                "eventData": renderer.event_data(data.state(index)),
                "syncType": "initial_sync",
                "syncDataType": "ats_applications",
                "syncJobId": "sj_b",
                "syncRunId": "sr_b",
                "recordId": data.application_id(index),
            }
        )
        sizes += len(body)
        connection.request(
            "POST",
            "/knit",
            body,
            {
                "Content-Type": "application/json",
                "X-Knit-Signature": signer.sign(body).decode(),
                "X-Knit-Integration-Id": "bench-baseline",
            },
        )
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"sink answered {response.status}")
    seconds = time.perf_counter() - started
    connection.close()
    return {"seconds": seconds, "events": events, "avg_body_bytes": sizes / events}


def _generation_rate(events: int) -> float:
    """Events built and signed per second, no network: the CPU cost the sender cannot avoid."""
    data = IntegrationData(1, "bench-generation", events)
    renderer = Renderer(data)
    signer = Signer(API_KEY.encode())
    started = time.perf_counter()
    for index in range(events):
        signer.sign(orjson.dumps({"eventData": renderer.event_data(data.state(index))}))
    return events / (time.perf_counter() - started)


def run(full: bool = False) -> dict[str, Any]:
    applications = 1_000_000 if full else 50_000
    concurrency = 32
    sink, sink_url = _start_sink()
    try:
        baseline = _baseline(10_000 if full else 5_000, sink_url)
        simulated = _simulator_run(applications, sink_url, concurrency)
    finally:
        sink.terminate()
        sink.wait(10)
    rate = simulated["events"] / simulated["seconds"]
    baseline_rate = baseline["events"] / baseline["seconds"]
    return {
        "benchmark": "simulator",
        "mode": "full" if full else "quick",
        "applications": applications,
        "concurrency": concurrency,
        "delivery_seconds": round(simulated["seconds"], 2),
        "events_per_s": round(rate),
        "baseline_sequential_events_per_s": round(baseline_rate),
        "speedup_vs_baseline": round(rate / baseline_rate, 2),
        "simulator_cpu_us_per_event": round(simulated["cpu"] / simulated["events"] * 1e6),
        "events_per_simulator_cpu_second": round(simulated["events"] / simulated["cpu"]),
        "generation_only_events_per_s": round(_generation_rate(5_000)),
        "avg_body_bytes": round(baseline["avg_body_bytes"]),
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "meets_target": rate >= TARGET_EVENTS_PER_S,
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine during the run
    }


if __name__ == "__main__":
    print(json.dumps(run(full="--full" in sys.argv)), flush=True)
