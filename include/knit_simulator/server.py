"""Run the simulator: serve the API on 127.0.0.1 and announce readiness with one line on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from knit_simulator.api import build_app
from knit_simulator.config import SimConfig, parse_args
from knit_simulator.simulator import Simulator

READY_PREFIX = "knit-simulator listening on "
log = logging.getLogger("knit_simulator")


async def serve(config: SimConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT arrives)."""
    sim = Simulator(config)
    runner = web.AppRunner(build_app(sim), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    gc.freeze()  # start-up objects live forever; keep them out of the collections a run triggers
    print(f"{READY_PREFIX}http://{config.host}:{port}", flush=True)
    log.info(
        "serving %d applications per integration (seed %d), concurrency %d",
        config.applications,
        config.seed,
        config.concurrency,
    )
    try:
        await stop.wait()
    finally:
        await sim.close()
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop  # the delivery loop is CPU-bound Python; uvloop's I/O costs less per request
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
