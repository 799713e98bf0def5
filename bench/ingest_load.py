"""Load generator for bench_ingest: wrk with a signing Lua script when installed, else Python.

wrk (``apt-get install wrk``) is used when on PATH: written in C, it leaves the CPU to the
receiver and Postgres. The fallback is a multi-process aiohttp client (one process per core),
which itself costs a core at these rates, so its figures understate the receiver.

Both report what they sent as ``sent``: ``[id_prefix, first, last]`` triples meaning the event
ids ``id_prefix + str(first)`` to ``id_prefix + str(last)`` (:func:`sent_ids`), so that a benchmark
can check the landing table by ids, not counts.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ID_MARK = "__EVENT_ID__"


def application_event(event_id: str) -> dict[str, Any]:
    """A ``record.new`` of ``ats_applications`` the size of a real one (about 2 KB), nulls included."""
    return {
        "eventId": event_id,
        "eventType": "record.new",
        "eventData": {
            "info": {
                "id": "app_48213",
                "status": "ACTIVE",
                "origin": "REFERRAL",
                "jobId": "job_7f3a9c21",
                "appliedAt": "2026-10-02T09:14:27Z",
                "updatedAt": "2026-11-20T16:41:03Z",
                "candidate": {
                    "id": "cand_48213",
                    "firstName": "Margarethe",
                    "lastName": "Okonkwo-Lindqvist",
                    "phones": [
                        {"type": "MOBILE", "phoneNumber": "+44 7700 900123"},
                        {"type": "WORK", "phoneNumber": None},
                    ],
                    "emails": [{"type": "PERSONAL", "email": "m.okonkwo.lindqvist@example.org"}],
                    "links": ["https://www.linkedin.com/in/example-candidate", "https://github.com/example"],
                    "location": {"city": "Manchester", "state": None, "country": "GB", "zipCode": "M1 1AE"},
                },
                "owner": {"id": "usr_1001", "email": "recruiter.one@example.com", "employeeId": None},
                "creditedTo": {"id": "usr_1002", "email": "sourcer.two@example.com", "employeeId": "E-2231"},
            },
            "currentStage": {"id": "stg_4", "name": "Technical Interview"},
            "interviews": [
                {
                    "id": f"int_{n}",
                    "subject": f"Round {n}: systems design and coding exercise",
                    "scheduledStart": "2026-11-0{n}T10:00:00Z",
                    "scheduledEnd": "2026-11-0{n}T11:00:00Z",
                    "status": "COMPLETED",
                    "interviewers": [
                        {"id": "usr_2001", "email": "lead@example.com"},
                        {"id": "usr_2002", "email": "peer@example.com"},
                    ],
                }
                for n in (1, 2, 3)
            ],
            "rejection": None,
            "offers": [],
            "attachments": [
                {
                    "type": "RESUME",
                    "name": "cv-margarethe-okonkwo.pdf",
                    "link": "https://files.example.com/a/8d1e5c0b?sig=0123456789abcdef&expires=1764000000",
                },
                {
                    "type": "COVER_LETTER",
                    "name": "cover-letter.pdf",
                    "link": "https://files.example.com/a/9e2f6d1c?sig=fedcba9876543210&expires=1764000000",
                },
            ],
        },
        "syncType": "initial_sync",
        "syncDataType": "ats_applications",
        "syncJobId": "sj_bench",
        "syncRunId": "sr_bench",
        "recordId": event_id,
    }


def body_parts() -> list[str]:
    """The body split around the event id, which it holds twice (``eventId`` and ``recordId``)."""
    text = json.dumps(application_event(ID_MARK), separators=(",", ":"), ensure_ascii=True)
    return text.split(ID_MARK)


def run_wrk(url: str, secret: str, seconds: float, connections: int, prefix: str) -> dict[str, Any]:
    # JSON string literals of ASCII text are valid Lua string literals.
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write("return {" + ", ".join(json.dumps(part) for part in body_parts()) + "}\n")
    script = HERE / "ingest_wrk.lua"
    proc = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds:.0f}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
            "--",
            secret,
            handle.name,
            prefix,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(handle.name).unlink()
    line = next(line for line in proc.stdout.splitlines() if line.startswith("{"))
    result = json.loads(line)
    # The Lua script counts per thread (thread numbers start at 1); see its ``request()``. wrk calls
    # ``request()`` once on its first thread to check the script before it starts, so that thread's
    # id 1 is never sent.
    result["sent"] = [
        [f"{prefix}-{thread}-", 2 if thread == 1 else 1, count] for thread, count in enumerate(result["sent"], 1)
    ]
    result["generator"] = "wrk"
    return result


async def _client(url: str, secret: bytes, deadline: float, connections: int, prefix: str) -> dict[str, Any]:
    import aiohttp

    from knit_provider.webhook.signature import sign

    parts = body_parts()
    latencies: list[float] = []
    counts = {"ok": 0, "not_ok": 0, "socket_errors": 0}
    sent = [0] * connections

    async def worker(index: int, session: Any) -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            sent[index] = n
            event_id = f"{prefix}-{index}-{n}"
            body = event_id.join(parts).encode()
            started = time.perf_counter()
            try:
                async with session.post(
                    url,
                    data=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-Knit-Signature": sign(body, secret),
                        "X-Knit-Integration-Id": "bench-integration",
                    },
                ) as response:
                    await response.read()
                    counts["ok" if response.status == 200 else "not_ok"] += 1
            except aiohttp.ClientError:
                counts["socket_errors"] += 1
                continue
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(i, session) for i in range(connections)))
    return {**counts, "latencies": latencies, "sent": [[f"{prefix}-{i}-", 1, n] for i, n in enumerate(sent)]}


def _process(args: tuple[str, bytes, float, int, str]) -> dict[str, Any]:
    import uvloop

    return uvloop.run(_client(*args))


def run_python(url: str, secret: str, seconds: float, connections: int, prefix: str) -> dict[str, Any]:
    processes = 2
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(
            _process,
            [(url, secret.encode(), deadline, connections // processes, f"{prefix}{p}") for p in range(processes)],
        )
    duration = time.monotonic() - started
    latencies = sorted(x for r in results for x in r["latencies"])

    def pct(q: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6) if latencies else 0

    return {
        "requests": sum(r["ok"] + r["not_ok"] for r in results),
        "ok": sum(r["ok"] for r in results),
        "not_ok": sum(r["not_ok"] for r in results),
        "socket_errors": sum(r["socket_errors"] for r in results),
        "duration_us": int(duration * 1e6),
        "p50_us": pct(0.5),
        "p90_us": pct(0.9),
        "p99_us": pct(0.99),
        "max_us": pct(1.0),
        "mean_us": sum(latencies) / max(len(latencies), 1) * 1e6,
        "sent": [pair for r in results for pair in r["sent"]],
        "generator": "python-aiohttp",
    }


def sent_ids(result: dict[str, Any]) -> list[str]:
    """Every event id a load run sent (answered or not), from its ``sent`` ranges."""
    return [f"{prefix}{n}" for prefix, first, last in result["sent"] for n in range(first, last + 1)]


def run_load(url: str, secret: str, seconds: float, connections: int, prefix: str) -> dict[str, Any]:
    """Drive ``url`` with ``connections`` concurrent clients for ``seconds``; return counts and latency."""
    if shutil.which("wrk"):
        return run_wrk(url, secret, seconds, connections, prefix)
    return run_python(url, secret, seconds, connections, prefix)
