"""The body budget of one process: bytes of request bodies held while they are read, at most ``max_buffered_bytes``.

Both front ends use it the same way: a request claims its declared ``Content-Length`` once its head
is complete (a chunked one, its bytes as they arrive), is refused with :attr:`BodyBudget.full` (503
with ``Retry-After``: Knit sends it again later) when the claim does not fit, and gives its claim
back whichever way it ends. Only many large bodies at once fill it: Knit's are a few kB.
"""

from __future__ import annotations

from knit_provider.webhook import handling, stats
from knit_provider.webhook.writer import GroupCommitWriter


class BodyBudget:
    """What the requests being read hold of the process's ``max_buffered_bytes``."""

    __slots__ = ("full", "held", "limit")

    def __init__(self, writer: GroupCommitWriter) -> None:
        self.limit = writer.settings.max_buffered_bytes
        self.held = 0
        # The standalone server closes the connection after it; uvicorn (mounted) reads and drops the rest
        # of the body, since closing with unread bytes would reset the connection and lose the answer.
        self.full = handling.unavailable("the receiver holds as many request bodies as it may", writer)

    def claim(self, size: int) -> bool:
        """Claim ``size`` more bytes; ``False`` (counted as a ``memory_budget`` rejection) if they do not fit."""
        if self.held + size > self.limit:
            stats.REJECTED["memory_budget"].inc()
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        """Give back ``size`` bytes claimed earlier."""
        self.held -= size


class BodyClaim:
    """What one request's body holds of a :class:`BodyBudget`; reused request after request on a connection."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def cover(self, size: int) -> bool:
        """Hold at least ``size`` bytes (the declared length, or what a chunked body has sent so far).

        ``False`` when the rest does not fit: the request is to be refused with ``budget.full``.
        """
        if size <= self.size:
            return True
        if not self.budget.claim(size - self.size):
            return False
        self.size = size
        return True

    def release(self) -> None:
        """Give the claim back: the request is answered, refused, cut, or its body is the writer's now."""
        if self.size:
            self.budget.release(self.size)
            self.size = 0
