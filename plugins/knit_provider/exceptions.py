"""Typed errors of the Knit provider: each says what failed, carries Knit's own words, and never a secret.

A task can tell a retryable failure (:class:`KnitTransientError`) from one that only a change of
request or configuration can fix (:class:`KnitTerminalError`) by type, never by parsing text.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class KnitError(AirflowException):
    """Base of every error the Knit provider raises."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        knit_message: str | None = None,
        execution_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        # AirflowException's class default is the status Airflow's own API would answer with;
        # here it is the status Knit answered with, None when no answer came.
        self.status_code = status_code  # type: ignore[assignment]
        self.knit_message = knit_message
        self.execution_id = execution_id
        self.endpoint = endpoint

    def _fields(self) -> dict[str, Any]:
        return {
            "status_code": self.status_code,
            "knit_message": self.knit_message,
            "execution_id": self.execution_id,
            "endpoint": self.endpoint,
        }

    def serialize(self) -> tuple[str, tuple[str], dict[str, Any]]:
        """Keep the fields when Airflow ships the error to another process, not just the text."""
        cls = self.__class__
        return f"{cls.__module__}.{cls.__name__}", (str(self),), self._fields()


class KnitTransientError(KnitError):
    """Knit or the network failed in a way a later attempt may fix, and the retry budget ran out."""

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 1,
        status_code: int | None = None,
        knit_message: str | None = None,
        execution_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            knit_message=knit_message,
            execution_id=execution_id,
            endpoint=endpoint,
        )
        self.attempts = attempts

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "attempts": self.attempts}


class KnitTerminalError(KnitError, AirflowFailException):
    """A failure no retry can fix; Airflow fails the task at once instead of retrying it."""


class KnitAuthError(KnitTerminalError):
    """Knit rejected the API key (HTTP 401 or 403)."""


class KnitRequestError(KnitTerminalError):
    """Knit refused the request: a 4xx answer, or ``success: false`` inside a 200."""


class KnitResponseError(KnitTerminalError):
    """Knit's answer could not be used: not JSON, not Knit's envelope, or missing a field we need."""


class KnitConfigurationError(KnitTerminalError):
    """The Knit connection or the arguments given to the provider are incomplete or invalid."""


class KnitInputError(KnitConfigurationError, ValueError):
    """A value given to a task (param, templated field, argument) is unusable; the message names it.

    A ``ValueError`` too, so a CLI reports it like any other bad argument (``error: ...``, status 2).
    """


class KnitLandingClockError(KnitTransientError):
    """The landing database could not be asked for its clock; nothing was sent to Knit."""
