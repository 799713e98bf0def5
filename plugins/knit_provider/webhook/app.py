"""The receiver as an ASGI app (``POST /webhook``, ``GET /health[/ready|/live]``), built by :func:`create_app`.

This is the front end Airflow's API server mounts (at ``/knit``), where no lifespan runs: the
receiver then starts on its first request. Requests are routed past FastAPI's routing and
exception layers, which cost more per request than verifying and parsing the body; what to
answer is decided in :mod:`knit_provider.webhook.handling`, the same as in the standalone server.

The server in front (uvicorn in Airflow's API server) has parsed the head before the app sees the
request, so limits on URL, headers and head time, connections and their rate are the proxy's
(docs/receiver.md, "What the proxy in front of the mounted receiver must enforce"); the app bounds what
it reads itself: the body's size (413), its time (408),
and the bodies being read together, with the standalone server's per-process budget
(:class:`~knit_provider.webhook.budget.BodyBudget`: 503 with ``Retry-After`` past it). A body is
hashed as it arrives (:class:`~knit_provider.webhook.signature.Signer`), so a forged one is refused
without its pieces being joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route, get_route_path

from knit_provider.webhook import handling
from knit_provider.webhook.budget import BodyBudget, BodyClaim
from knit_provider.webhook.handling import Answer
from knit_provider.webhook.receiver import Receiver
from knit_provider.webhook.settings import ReceiverSettings
from knit_provider.webhook.signature import Signer
from knit_provider.webhook.writer import GroupCommitWriter, Unavailable

log = logging.getLogger(__name__)


async def _send(send: Any, answer: Answer, with_body: bool = True) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer.body)).encode()),
                *answer.headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body if with_body else b""})


class Endpoints:
    """ASGI handler of the receiver's routes: the answers are 200, 400, 401, 404, 405, 413 and 503, never 500."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.budget: BodyBudget | None = None  # the process's body budget, made with the writer

    def _budget(self, writer: GroupCommitWriter) -> BodyBudget:
        if self.budget is None:
            self.budget = BodyBudget(writer)
        return self.budget

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method = scope["method"]
        try:
            target = handling.route(method, get_route_path(scope))
            if isinstance(target, Answer):
                answer: Answer | None = target
            elif target == handling.WEBHOOK:
                answer = await self._webhook(scope, receive)
            elif target == handling.LIVE:
                answer = handling.OK
            else:
                answer = await self._health()
        except Exception:
            log.exception("Unexpected error while receiving a webhook; answering 503 so that it is sent again")
            answer = handling.unavailable("unexpected receiver error", self.receiver.writer)
        if answer is not None:  # None: the client went away before sending its body
            await _send(send, answer, with_body=method != "HEAD")

    async def _health(self) -> Answer:
        try:
            writer = await self.receiver.ready()
        except Unavailable:  # why is in the API server's log, not for whoever probes
            return handling.NOT_READY
        return await handling.health(writer)

    async def _webhook(self, scope: dict[str, Any], receive: Any) -> Answer | None:
        try:
            writer = await self.receiver.ready()
        except Unavailable as exc:
            return handling.unavailable(str(exc), None)
        limit = writer.settings.max_body_bytes
        headers: handling.Headers = scope["headers"]
        head = handling.check_headers(headers, limit)
        if isinstance(head, Answer):
            return head
        claim = BodyClaim(self._budget(writer))
        if head.length and not claim.cover(head.length):
            return claim.budget.full  # refused before its body is read
        secret = writer.settings.secret
        signer = Signer(secret) if secret is not None and head.signature else None
        seconds = writer.settings.body_timeout_seconds
        try:
            body = await asyncio.wait_for(_read_body(receive, limit, claim, signer), seconds)
        except asyncio.TimeoutError:
            return handling.closing(408, f"request not complete within {seconds:g} s")
        finally:
            claim.release()  # answered, refused, cut or gone; read whole, the body is the writer's now
        if isinstance(body, Answer) or body is None:
            return body
        raw_signed = None if signer is None else signer.matches(head.signature)
        return await handling.answer(writer, head, headers, body, raw_signed)


async def _read_body(receive: Any, limit: int, claim: BodyClaim, signer: Signer | None) -> list[bytes] | Answer | None:
    """The body's pieces, hashed by ``signer`` as they arrive; ``None`` if the client went away.

    413 as soon as it passes ``limit``; 503 when a body without ``Content-Length``, claimed as it
    arrives, passes what is left of the budget.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return handling.too_large(limit)
        if not claim.cover(size):
            return claim.budget.full
        if chunk:
            chunks.append(chunk)
            if signer is not None:
                signer.update(chunk)
        if not message.get("more_body", False):
            return chunks


class _FastPath:
    """Hand every HTTP request to :class:`Endpoints`, past FastAPI's layers (mounted too: paths are relative)."""

    def __init__(self, app: Any, endpoints: Endpoints) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.endpoints(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(settings: ReceiverSettings | Callable[[], ReceiverSettings]) -> FastAPI:
    """Build the receiver app from settings, or from a loader called once when it first starts.

    :param settings: resolved settings, or a callable returning them (the plugin: the Airflow
        connections are read in the API server on the first request, never at import).
    """
    receiver = Receiver(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with contextlib.suppress(Unavailable):  # logged; requests answer 503 until the configuration is fixed
            await receiver.ready()
        yield
        await receiver.close()

    app = FastAPI(title="Knit webhook receiver", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    endpoints = Endpoints(receiver)
    # Listed for whoever inspects the app; requests reach them through _FastPath.
    app.router.routes.append(Route(handling.WEBHOOK_PATH, endpoints, methods=["POST"]))
    for path in (handling.HEALTH_PATH, handling.READY_PATH, handling.LIVE_PATH):
        app.router.routes.append(Route(path, endpoints, methods=["GET"]))
    app.add_middleware(_FastPath, endpoints=endpoints)
    app.state.receiver = receiver
    app.state.endpoints = endpoints
    return app
