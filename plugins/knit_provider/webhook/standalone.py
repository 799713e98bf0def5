"""Run the standalone receiver: one process, or several worker processes sharing the port.

Each worker is a whole receiver (event loop, HTTP server, writer with its own connections) bound
to the same address with ``SO_REUSEPORT``, so the kernel spreads connections over the workers
and one slow process never holds the others' answers. The parent only supervises: it restarts a
worker that dies, and on SIGTERM/SIGINT stops them gracefully (answering what is in flight).

Metrics (``metrics_port``) are served by the process that sees every count: the receiver itself,
or with workers the supervisor, from the files the workers write in a directory of its own
(``prometheus-client``'s multiprocess mode, see :mod:`knit_provider.webhook.stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time

from knit_provider.webhook import stats
from knit_provider.webhook.receiver import Receiver
from knit_provider.webhook.server import RawServer
from knit_provider.webhook.settings import ReceiverSettings

log = logging.getLogger("knit_provider.webhook")

GRACE_SECONDS = 10.0
_RESTART_DELAY_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


async def serve_async(settings: ReceiverSettings, host: str, port: int, reuse_port: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then answer what is in flight and land what is queued."""
    import gc

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    receiver = Receiver(settings)
    writer = await receiver.ready()
    server = RawServer(writer)
    await server.start(host, port, reuse_port=reuse_port)
    # What is alive now lives until exit: keep the cyclic collector from scanning it again and again.
    gc.freeze()
    log.info("Serving http://%s:%d/webhook (process %d)", host, port, os.getpid())
    await stop.wait()
    log.info("Stopping: answering requests in flight (up to %.0f s)", GRACE_SECONDS)
    await server.stop(GRACE_SECONDS)
    await receiver.close()


def serve(settings: ReceiverSettings, host: str, port: int, workers: int = 1) -> None:
    """Serve in this process (``workers == 1``) or in ``workers`` supervised processes."""
    import uvloop

    if workers <= 1:
        _serve_metrics(settings)
        uvloop.run(serve_async(settings, host, port))
        return
    port = _reserve_port(host, port)
    # Before any worker starts: prometheus-client reads the variable when a worker imports it.
    directory = tempfile.mkdtemp(prefix="knit-webhook-metrics-")
    os.environ[stats.MULTIPROC_ENV] = directory
    try:
        _serve_metrics(settings)
        _supervise(settings, host, port, workers)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _serve_metrics(settings: ReceiverSettings) -> None:
    if settings.metrics_port is None:
        return
    try:
        port = stats.serve_metrics(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        raise SystemExit(
            f"error: cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
            f"({exc.strerror}); choose another --metrics-port"
        ) from None
    log.info("Prometheus metrics on http://%s:%d/metrics", settings.metrics_host, port)


def _reserve_port(host: str, port: int) -> int:
    """Fail now if the address is taken, and resolve port 0, before any worker starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])
    finally:
        probe.close()


def _worker_main(settings: ReceiverSettings, host: str, port: int, log_level: int) -> None:
    import uvloop

    _die_with_parent()
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    uvloop.run(serve_async(settings, host, port, reuse_port=True))


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the supervisor dies, so that no orphan keeps the port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _supervise(settings: ReceiverSettings, host: str, port: int, workers: int) -> None:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the parent's threads
    level = logging.getLogger().getEffectiveLevel()
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker_main, args=(settings, host, port, level), daemon=False)
        process.start()
        return process

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    processes = [start() for _ in range(workers)]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("Started %d worker processes on port %d", workers, port)
    while not stopping:
        multiprocessing.connection.wait([p.sentinel for p in processes], timeout=1.0)
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                log.error("Worker process %s exited with %s; starting another", process.pid, process.exitcode)
                _forget_worker(process.pid)
                time.sleep(_RESTART_DELAY_SECONDS)
                processes[index] = start()
    for process in processes:
        process.join(GRACE_SECONDS + 20)
        if process.is_alive():
            process.kill()
            process.join()
        _forget_worker(process.pid)


def _forget_worker(pid: int | None) -> None:
    """Drop a dead worker's gauges from the sum (its counters stay: what it counted did happen)."""
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid)
