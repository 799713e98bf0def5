"""The receiver of one process: its settings and its writer, started once, by whichever front end serves it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from knit_provider.webhook.settings import ReceiverSettings, SettingsError
from knit_provider.webhook.writer import GroupCommitWriter, Unavailable

log = logging.getLogger("knit_provider.webhook.app")

_SETTINGS_RETRY_SECONDS = 30.0


class Receiver:
    """Settings and writer of one process, started once: at start-up, or by the first request (mounted)."""

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
                    log.warning(
                        "UNSIGNED MODE: webhook signatures are NOT verified; anyone who can reach "
                        "this receiver can write to the landing store. Use it for local demos only."
                    )
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
