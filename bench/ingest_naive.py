"""bench_ingest's original baseline, (c): verify, one ``land_events``, commit, answer. No batching.

A small ASGI app under uvicorn with uvloop and httptools, with orjson, asyncpg and the same
``land_events`` statement as the receiver, but not the receiver's HTTP server: the difference
between it and the receiver is server and group commit together. bench_ingest therefore also runs
the same naive strategy on the receiver's own server, (b), and reports the two apart; this one is
kept for continuity with earlier results.
Run: ``python -m bench.ingest_naive --port P --database-url URL --secret S [--pool-size N]``.
"""

from __future__ import annotations

import argparse
from typing import Any

import asyncpg
import orjson

from knit_provider.landing.store import LandingStore
from knit_provider.settings import Schemas
from knit_provider.webhook.envelope import EnvelopeError, to_event
from knit_provider.webhook.signature import verify


def naive_app(database_url: str, secret: bytes, pool_size: int) -> Any:
    store = LandingStore(Schemas())
    state: dict[str, Any] = {}

    async def reply(send: Any, status: int) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                state["pool"] = await asyncpg.create_pool(database_url, min_size=pool_size, max_size=pool_size)
                await send({"type": "lifespan.startup.complete"})
            await state["pool"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/ready":
            return await reply(send, 200)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = dict(scope["headers"])
        if not verify(body, headers.get(b"x-knit-signature"), secret):
            return await reply(send, 401)
        try:
            event = to_event(body, orjson.loads(body), headers.get(b"x-knit-integration-id", b"").decode())
        except (EnvelopeError, orjson.JSONDecodeError):
            return await reply(send, 400)
        await state["pool"].fetchval(store.land_sql, *store.land_args([event]))
        await reply(send, 200)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--pool-size", type=int, default=16)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        naive_app(args.database_url, args.secret.encode(), args.pool_size),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
