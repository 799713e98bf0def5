"""The receiver as an ASGI app: ``POST /webhook`` and ``GET /health``, built by :func:`create_app`.

``POST /webhook`` is a plain ASGI handler rather than a FastAPI endpoint: it runs for every one
of Knit's calls, so it streams the body itself (413 without buffering a huge one), verifies,
parses once with orjson and waits for the group commit, with no per-request validation layer.
The same app runs standalone (``python -m knit_provider.webhook``) and mounted into Airflow's
API server by the plugin, where no lifespan runs: the receiver then starts on its first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.routing import Route, get_route_path

from knit_provider.webhook.envelope import DeadLetter, EnvelopeError, parse_json, safe_headers, to_event
from knit_provider.webhook.settings import ReceiverSettings, SettingsError
from knit_provider.webhook.signature import SIGNATURE_HEADER, verify
from knit_provider.webhook.writer import GroupCommitWriter, Refused, Unavailable

log = logging.getLogger(__name__)

_INTEGRATION_HEADER = b"x-knit-integration-id"
_SETTINGS_RETRY_SECONDS = 30.0
_UNPARSED = object()


class Receiver:
    """Settings and writer of one process, started once: by the lifespan, or by the first request."""

    def __init__(self, settings: ReceiverSettings | Callable[[], ReceiverSettings]) -> None:
        self._settings = settings if isinstance(settings, ReceiverSettings) else None
        self._loader = None if isinstance(settings, ReceiverSettings) else settings
        self._writer: GroupCommitWriter | None = None
        self._lock = asyncio.Lock()
        self._load_failed_at = -_SETTINGS_RETRY_SECONDS

    @property
    def writer(self) -> GroupCommitWriter | None:
        return self._writer

    async def ready(self) -> GroupCommitWriter:
        """Return the started writer; raise :class:`Unavailable` while the receiver cannot be configured."""
        if self._writer is not None:
            return self._writer
        async with self._lock:
            if self._writer is None:
                settings = await self._load_settings()
                if settings.unsigned:
                    log.warning("UNSIGNED MODE: webhook signatures are NOT verified; anyone who can reach "
                                "this receiver can write to the landing store. Use it for local demos only.")
                writer = GroupCommitWriter(settings)
                await writer.start()
                self._writer = writer
        return self._writer

    async def _load_settings(self) -> ReceiverSettings:
        if self._settings is not None:
            return self._settings
        assert self._loader is not None
        if time.monotonic() - self._load_failed_at < _SETTINGS_RETRY_SECONDS:
            raise Unavailable("the webhook receiver is not configured (see the API server log)")
        try:
            # Connections may come from the metadata database or a secrets backend: keep the loop free.
            self._settings = await asyncio.to_thread(self._loader)
        except SettingsError as exc:
            self._load_failed_at = time.monotonic()
            log.error("The Knit webhook receiver cannot start: %s", exc)
            raise Unavailable("the webhook receiver is not configured (see the API server log)") from None
        return self._settings

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None


def _json(status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None,
          ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return status, orjson.dumps(payload), headers or []


_OK: tuple[int, bytes, list[tuple[bytes, bytes]]] = (200, b'{"status":"ok"}', [])


class WebhookEndpoint:
    """ASGI handler of ``POST /webhook``: the answers are 200, 400, 401, 413 and 503, never 500."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            answer = await self._handle(scope, receive)
        except Exception:
            log.exception("Unexpected error while receiving a webhook; answering 503 so that it is sent again")
            answer = self._unavailable("unexpected receiver error")
        if answer is None:  # the client went away before sending its body
            return
        status, body, headers = answer
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})

    def _unavailable(self, message: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        retry_after = self.receiver.writer.settings.retry_after_seconds if self.receiver.writer else 5
        return _json(503, {"error": f"{message}; retry later"}, [(b"retry-after", str(retry_after).encode())])

    async def _handle(self, scope: dict[str, Any], receive: Any) -> tuple[int, bytes, list[Any]] | None:
        try:
            writer = await self.receiver.ready()
        except Unavailable as exc:
            return self._unavailable(str(exc))
        limit = writer.settings.max_body_bytes
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        signature: bytes | None = None
        integration_id: str | None = None
        for name, value in raw_headers:
            if name == b"content-length":
                if not value.isdigit():
                    return _json(400, {"error": "Content-Length is not a number"})
                if int(value) > limit:
                    return self._too_large(limit)
            elif name == SIGNATURE_HEADER:
                signature = value
            elif name == _INTEGRATION_HEADER:
                integration_id = value.decode("latin-1")

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return self._too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)

        secret = writer.settings.secret
        document: Any = _UNPARSED
        if secret is not None:
            if not signature:
                return _json(401, {"error": "missing X-Knit-Signature header"})
            if not verify(body, signature, secret):
                try:
                    document = orjson.loads(body)
                except orjson.JSONDecodeError:
                    document = None
                if document is None or not verify(body, signature, secret, document):
                    return _json(401, {"error": "X-Knit-Signature does not match the body"})
        try:
            if document is _UNPARSED:
                document = parse_json(body)
            event = to_event(body, document, integration_id)
        except EnvelopeError as exc:
            return await self._reject(writer, body, raw_headers, str(exc), integration_id, secret is not None)

        try:
            await writer.submit_event(event, secret is not None, raw_headers)
        except Unavailable as exc:
            return self._unavailable(str(exc))
        except Refused as exc:
            return _json(400, {"error": str(exc)})
        return _OK

    def _too_large(self, limit: int) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return _json(413, {"error": f"body larger than {limit} bytes"}, [(b"connection", b"close")])

    async def _reject(self, writer: GroupCommitWriter, body: bytes, raw_headers: list[tuple[bytes, bytes]],
                      reason: str, integration_id: str | None, signed: bool) -> tuple[int, bytes, list[Any]]:
        """Answer 400; a signed body is dead-lettered first (503 if that cannot be done now)."""
        if signed:
            letter = DeadLetter(body, safe_headers(raw_headers), reason, integration_id)
            try:
                await writer.submit_dead_letter(letter)
            except Unavailable as exc:
                return self._unavailable(str(exc))
        return _json(400, {"error": reason})


class _WebhookFastPath:
    """Hand ``POST /webhook`` straight to its handler, past FastAPI's routing and exception layers.

    Those layers cost more per request than verifying and parsing the body; every other request
    (``/health``, 404s, 405s) still goes through FastAPI. Works mounted too: the route path is
    taken relative to the mount point.
    """

    def __init__(self, app: Any, endpoint: WebhookEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and get_route_path(scope) == "/webhook":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(settings: ReceiverSettings | Callable[[], ReceiverSettings]) -> FastAPI:
    """Build the receiver app from settings, or from a loader called once when it first starts.

    :param settings: resolved settings (standalone), or a callable returning them (the plugin: the
        Airflow connections are read in the API server on the first request, never at import).
    """
    receiver = Receiver(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with contextlib.suppress(Unavailable):  # logged; requests answer 503 until the configuration is fixed
            await receiver.ready()
        yield
        await receiver.close()

    app = FastAPI(title="Knit webhook receiver", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    endpoint = WebhookEndpoint(receiver)
    app.router.routes.append(Route("/webhook", endpoint, methods=["POST"]))
    app.add_middleware(_WebhookFastPath, endpoint=endpoint)

    @app.get("/health")
    async def health() -> JSONResponse:
        """Database reachability and queue depth; 503 while the database is unreachable."""
        try:
            writer = await receiver.ready()
        except Unavailable as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        database = await writer.ping()
        return JSONResponse(
            {"status": "ok" if database else "unavailable", "database": database,
             "queue_depth": writer.queue_depth, "writers_connected": writer.connected_writers,
             "signed": writer.settings.secret is not None},
            status_code=200 if database else 503,
        )

    app.state.receiver = receiver
    return app


def app_from_environment() -> FastAPI:
    """App factory for worker processes (``uvicorn --factory``): settings from ``KNIT_WEBHOOK_*``."""
    from knit_provider.webhook.settings import resolve_settings

    if not logging.getLogger().handlers:
        logging.basicConfig(level=os.environ.get("KNIT_WEBHOOK_LOG_LEVEL", "INFO"),
                            format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    return create_app(resolve_settings())
