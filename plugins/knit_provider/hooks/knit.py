"""KnitHook: the only code that talks to Knit's API.

Every call goes through :meth:`KnitHook._request`, which owns the auth headers, the timeout, the
retries and the mapping of failures to the typed errors of :mod:`knit_provider.exceptions`. The
public methods are one Knit operation each and return small typed results.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import requests
from airflow.providers.http.hooks.http import HttpHook
from urllib3.exceptions import NewConnectionError

from knit_provider.exceptions import (
    KnitConfigurationError,
    KnitError,
    KnitRequestError,
    KnitTransientError,
)
from knit_provider.hooks import responses
from knit_provider.hooks.connection_form import ui_field_behaviour
from knit_provider.hooks.knit_connection import KnitConnection, read_knit_connection
from knit_provider.hooks.retry import Clock, RetryPolicy, SystemClock, is_transient_status, parse_retry_after
from knit_provider.inputs import optional_text
from knit_provider.redaction import Redactor
from knit_provider.settings import DEFAULT_KNIT_CONN_ID, DEFAULT_KNIT_HOST, KNIT_CONN_TYPE

SYNC_START = "/v1.0/sync.start"
SYNC_UPDATE = "/v1.0/sync.update"
INTEGRATION_ID_HEADER = "X-Knit-Integration-Id"
# Knit's pages do not name the job-id key of sync.update's body. "syncJobId" is Knit's name for the
# job id everywhere it is confirmed (sync.start's answer, every webhook envelope); "jobId" is the
# other plausible reading. Nothing in Knit's pages says unknown body keys are refused, and its
# bodies differ from page to page (the applications page sends four of sync.start's nine known
# fields), so the id goes under both keys; a Knit that refuses one gets a clear error (update_sync).
SYNC_UPDATE_JOB_ID_KEYS: tuple[str, ...] = ("syncJobId", "jobId")

# A broken connection, mid-request or mid-answer, is worth another attempt; anything else
# requests raises (a malformed URL, too many redirects) is a configuration problem.
_TRANSIENT_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class SyncStarted:
    """Knit's answer to ``sync.start``: the ids that webhook events of this sync will carry."""

    sync_job_id: str
    sync_run_id: str | None
    execution_id: str | None
    integration_id: str


@dataclass(frozen=True)
class SyncUpdated:
    """Knit's answer to ``sync.update``."""

    sync_job_id: str
    execution_id: str | None
    integration_id: str


# What StartSyncOperator (or any caller) answers after a sync.start attempt of unknown outcome: the run
# that attempt started, found by other means, or None to send sync.start again. The argument is when
# the first attempt was made.
Recover = Callable[[datetime], SyncStarted | None]


class _Attached(Exception):
    """Raised by start_sync's retry check to stop retrying: ``recover`` found the run the call started."""

    def __init__(self, started: SyncStarted) -> None:
        super().__init__(started.sync_job_id)
        self.started = started


def never_sent(error: requests.RequestException) -> bool:
    """Say whether a transport error happened before the request could reach Knit.

    A refused or unreachable connection and a connect timeout fail before a byte of the request is
    sent; a read timeout, or a connection cut while the answer was awaited, leave Knit's side unknown.
    requests wraps urllib3's connect failures (NewConnectionError, a ConnectTimeoutError) in its own
    ConnectionError, so the wrapped reason decides.
    """
    if isinstance(error, requests.ConnectTimeout):
        return True
    if not isinstance(error, requests.ConnectionError) or isinstance(error, requests.exceptions.SSLError):
        return False
    reason = error.args[0] if error.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError carries the cause as .reason
    return isinstance(reason, NewConnectionError)


def outcome_unknown(failure: responses.Failure) -> KnitTransientError:
    """The error for a sync.start attempt that may have started a run and that nothing can check."""
    return KnitTransientError(
        f"Knit POST {SYNC_START}: the outcome is unknown ({failure.reason}): the request was sent and Knit may "
        "have started the sync, so it is not sent again (a second sync.start would start a second run). Look "
        "for the run in the landing store or Knit's dashboard before starting it again; StartSyncOperator "
        f"does that itself.{responses.execution_suffix(failure.execution_id)}",
        status_code=failure.status_code,
        knit_message=failure.knit_message,
        execution_id=failure.execution_id,
        endpoint=SYNC_START,
    )


def check_start_time(start_hour: int | None, start_minute: int | None) -> None:
    """Refuse a ``startHour``/``startMinute`` Knit could not read as a UTC time of day."""
    for name, value, top in (("start_hour", start_hour, 23), ("start_minute", start_minute, 59)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise KnitConfigurationError(
                f"{name} must be a whole number from 0 to {top} (Knit reads it as UTC), got {value!r}."
            )


def start_body(
    data_type: str,
    models: list[str],
    *,
    destination: str | None,
    frequency: str | None,
    sync_type: str | None,
    honor_scheduler: bool | None,
    include_inactive_records: bool | None,
    start_hour: int | None,
    start_minute: int | None,
) -> dict[str, Any]:
    """The body of ``sync.start``: Knit's documented fields, each only when set, and nothing unset."""
    responses.require_text(data_type, "data_type")
    if not models or not all(isinstance(m, str) and m.strip() for m in models):
        raise KnitConfigurationError(f"models must be a non-empty list of model ids, got {models!r}.")
    check_start_time(start_hour, start_minute)
    for name, value in (("destination", destination), ("frequency", frequency)):
        if value is not None:
            responses.require_text(value, name)
    fields = {
        "syncType": sync_type,
        "honorScheduler": honor_scheduler,
        "includeInactiveRecords": include_inactive_records,
        "startHour": start_hour,
        "startMinute": start_minute,
        # Not in Knit's "Start a sync" reference; the applications page sends them. Only when asked for.
        "destination": destination,
        "frequency": frequency,
    }
    return {"dataType": data_type, "models": list(models), **{k: v for k, v in fields.items() if v is not None}}


class KnitHook(HttpHook):
    """Call Knit's API (``sync.start``, ``sync.update``) with retries, typed errors and no leaked key.

    :param knit_conn_id: a ``knit`` connection: host (default ``https://api.getknit.dev``; a URL
        with scheme and port such as ``http://127.0.0.1:8765`` works), password = API key, extras
        ``integration_id``, ``webhook_secret``, ``timeout``, ``max_attempts``, ``max_retry_seconds``.
    :param timeout: seconds to wait for one answer; overrides the extra ``timeout`` (default 30).
    :param max_attempts: attempts per call on network errors, 429 and 5xx; overrides the extra
        (default 5).
    :param max_retry_seconds: total time per call, waits included; overrides the extra (default 300).
    :param clock: time source for retry waits (tests pass a fake one).
    :param rng: randomness for backoff jitter (tests pass a seeded one).
    """

    conn_name_attr = "knit_conn_id"
    default_conn_name = DEFAULT_KNIT_CONN_ID
    conn_type = KNIT_CONN_TYPE
    hook_name = "Knit"
    default_host = DEFAULT_KNIT_HOST

    def __init__(
        self,
        knit_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_attempts: int | None = None,
        max_retry_seconds: float | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(method="POST", http_conn_id=knit_conn_id)
        self.knit_conn_id = knit_conn_id
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._max_retry_seconds = max_retry_seconds
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._session: requests.Session | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hide login, schema and port; label the password "API key" (same data as the provider info)."""
        return ui_field_behaviour()

    # -- connection ---------------------------------------------------------------------------

    @cached_property
    def knit(self) -> KnitConnection:
        """The connection, read on first use (never at construction, so DAG parsing stays cheap)."""
        return read_knit_connection(
            self.get_connection(self.knit_conn_id),
            self.knit_conn_id,
            timeout=self._timeout,
            max_attempts=self._max_attempts,
            max_retry_seconds=self._max_retry_seconds,
        )

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """Return a new session that authenticates with Knit's Bearer header.

        Overrides ``HttpHook.get_conn``, which would send the login as basic auth and every extra
        (the webhook secret among them) as a request header.
        """
        knit = self.knit
        self.base_url = knit.base_url
        session = requests.Session()
        session.headers.update(
            {
                "Authorization": f"Bearer {knit.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        )
        if headers:
            session.headers.update(headers)
        return self._configure_session_from_mount_adapters(session)

    def get_webhook_secret(self) -> str:
        """Return the key webhook signatures are checked with: extra ``webhook_secret``, else the API key."""
        return self.knit.webhook_secret or self.knit.api_key

    def integration_for(self, integration_id: str | None) -> str:
        """Pick the integration a call is for: the argument, else the connection's default."""
        chosen = optional_text(integration_id) or self.knit.integration_id
        if not chosen:
            raise KnitConfigurationError(
                f"No Knit integration id: pass integration_id, or set the extra 'integration_id' of "
                f"connection {self.knit_conn_id!r}."
            )
        return chosen

    # -- operations ---------------------------------------------------------------------------

    def start_sync(
        self,
        data_type: str,
        models: list[str],
        *,
        destination: str | None = None,
        frequency: str | None = None,
        sync_type: str | None = None,
        honor_scheduler: bool | None = None,
        include_inactive_records: bool | None = None,
        start_hour: int | None = None,
        start_minute: int | None = None,
        integration_id: str | None = None,
        recover: Recover | None = None,
    ) -> SyncStarted:
        """Start (or restart) a sync of ``data_type`` for one integration, with the body Knit's reference documents.

        Knit pushes the run's events to the webhook configured for the data category in its dashboard;
        ``destination`` and ``frequency`` (the applications page's older shape) are sent only when given.
        Knit answers with the sync job id and, when it gives one, the run id; webhook events of this
        sync carry the same ids, which is how the landing store is correlated with this call.

        ``sync.start`` is not idempotent, so a failed attempt is retried only when Knit certainly did not
        act on it (no connection, connect timeout, Knit's 429). After an attempt whose outcome is unknown
        (read timeout, a connection cut after the request went out, a 5xx), ``recover`` is asked first,
        with the time of the first attempt (worker clock): a run it returns is the answer and the POST is
        not sent again; None sends it again. Without ``recover`` such an attempt is not retried.
        """
        integration = self.integration_for(integration_id)
        body = start_body(
            data_type,
            models,
            destination=destination,
            frequency=frequency,
            sync_type=sync_type,
            honor_scheduler=honor_scheduler,
            include_inactive_records=include_inactive_records,
            start_hour=start_hour,
            start_minute=start_minute,
        )
        first_attempt = self._clock.now()

        def may_resend(failure: responses.Failure) -> None:
            if failure.not_applied:
                return
            if recover is None:
                raise outcome_unknown(failure) from failure.cause
            found = recover(first_attempt)
            if found is not None:
                raise _Attached(found)

        try:
            data, execution_id = self._request(SYNC_START, body, integration_id=integration, may_resend=may_resend)
        except _Attached as attached:
            self.log.info(
                "Knit POST %s: attached to run %s (job %s) that began after the first attempt; sync.start "
                "not sent again",
                SYNC_START,
                attached.started.sync_run_id,
                attached.started.sync_job_id,
            )
            return attached.started
        started = SyncStarted(
            sync_job_id=responses.required_id(data, "syncJobId", SYNC_START, execution_id),
            sync_run_id=responses.optional_id(data, "syncRunId"),
            execution_id=execution_id,
            integration_id=integration,
        )
        self.log.info(
            "Knit started sync job %s (run %s) of %s for integration %s",
            started.sync_job_id,
            started.sync_run_id or "not given",
            data_type,
            integration,
        )
        return started

    def update_sync(
        self,
        sync_job_id: str,
        data_type: str,
        models: list[str] | None = None,
        frequency: str | None = None,
        destination: str | None = None,
        integration_id: str | None = None,
        *,
        job_id_keys: tuple[str, ...] = SYNC_UPDATE_JOB_ID_KEYS,
    ) -> SyncUpdated:
        """Change models, frequency or destination of a sync job (new models make Knit resync them all).

        :param data_type: sent as ``dataType``, always: Knit's "Update a sync" reference marks it required.
        :param job_id_keys: the body keys that carry ``sync_job_id``; the name is not confirmed by
            Knit, so both readings are sent by default. Pass ``("syncJobId",)`` if Knit refuses the
            other key.
        """
        integration = self.integration_for(integration_id)
        responses.require_text(sync_job_id, "sync_job_id")
        responses.require_text(data_type, "data_type")
        if not job_id_keys or not all(isinstance(k, str) and k.strip() for k in job_id_keys):
            raise KnitConfigurationError(
                f"job_id_keys must name at least one body key for the sync job id, got {job_id_keys!r}."
            )
        changes = {"models": models, "frequency": frequency, "destination": destination}
        body: dict[str, Any] = {key: value for key, value in changes.items() if value is not None}
        if not body:
            raise KnitConfigurationError(
                f"update_sync({sync_job_id!r}) changes nothing: pass models, frequency or destination."
            )
        body.update(dict.fromkeys(job_id_keys, sync_job_id))
        body["dataType"] = data_type
        try:
            _, execution_id = self._request(SYNC_UPDATE, body, integration_id=integration)
        except KnitRequestError as e:
            if e.status_code is not None and 300 <= e.status_code < 400:
                raise  # a redirect is about the host, not the body
            keys = " and ".join(repr(k) for k in job_id_keys)
            raise KnitRequestError(
                f"{e} Knit's pages do not confirm the body key of sync.update's job id; this call sent "
                f"{sync_job_id!r} as {keys}. If Knit's message is about that key (missing or unknown), pass "
                f"job_id_keys with the one key Knit reads.",
                status_code=e.status_code,
                knit_message=e.knit_message,
                execution_id=e.execution_id,
                endpoint=e.endpoint,
            ) from e
        changed = ", ".join(sorted(key for key, value in changes.items() if value is not None))
        self.log.info("Knit updated sync job %s (%s)", sync_job_id, changed)
        return SyncUpdated(sync_job_id=sync_job_id, execution_id=execution_id, integration_id=integration)

    def test_connection(self) -> tuple[bool, str]:
        """Check host and API key with one cheap authenticated call, without changing anything in Knit.

        Knit has no documented "who am I" endpoint, so the probe is ``sync.update`` with an empty
        body: it names no sync job and no change, so Knit can only refuse it. A 401/403 means the
        key is wrong; any other answer in Knit's envelope (a 4xx with ``error.msg``, or success)
        means the key was accepted. This relies on Knit checking the key before the body, as
        authenticated APIs do; one attempt only, so the UI's Test button answers quickly.
        """
        try:
            knit = self.knit
            self._request(
                SYNC_UPDATE,
                {},
                integration_id=knit.integration_id,
                policy=RetryPolicy(max_attempts=1, max_elapsed=knit.timeout),
            )
        except KnitRequestError as e:
            if e.knit_message is None:
                return False, (
                    f"{self.base_url} answered HTTP {e.status_code} without Knit's error envelope: "
                    "check that the host is Knit's API URL."
                )
            return True, (
                f"Connected to Knit at {self.base_url}: the API key was accepted (the probe "
                f"sync.update with an empty body was refused as expected: {e.knit_message})."
            )
        except KnitError as e:
            return False, str(e)
        return True, f"Connected to Knit at {self.base_url}: the API key was accepted."

    # -- the one request path -----------------------------------------------------------------

    def _request(
        self,
        endpoint: str,
        body: dict[str, Any],
        *,
        integration_id: str | None,
        policy: RetryPolicy | None = None,
        may_resend: Callable[[responses.Failure], None] | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        """POST ``body`` to ``endpoint``; return Knit's ``data`` and the execution id, or raise typed.

        Transient failures (network, timeout, 429, 5xx) are retried within ``policy``: the wait
        is ``Retry-After`` when Knit sends one, else exponential backoff with jitter, and no
        attempt starts once the total time budget is spent. ``may_resend`` sees each failure
        first and raises to stop the retries (a call that must not reach Knit twice).
        """
        knit = self.knit
        policy = policy or knit.policy
        if self._session is None:
            self._session = self.get_conn()
        session = self._session
        url = knit.base_url + endpoint
        headers = {INTEGRATION_ID_HEADER: integration_id} if integration_id else {}
        redact = Redactor(knit.api_key, knit.webhook_secret)
        started = self._clock.monotonic()
        attempt = 0
        while True:
            attempt += 1
            elapsed = self._clock.monotonic() - started
            timeout = max(0.1, min(knit.timeout, policy.max_elapsed - elapsed))
            try:
                response = session.post(url, json=body, headers=headers, timeout=timeout, allow_redirects=False)
            except _TRANSIENT_TRANSPORT_ERRORS as e:
                failure = responses.Failure(
                    reason=redact(f"{type(e).__name__}: {e}"), cause=e, not_applied=never_sent(e)
                )
            except requests.RequestException as e:
                raise KnitConfigurationError(
                    redact(f"Cannot call Knit at {url}: {type(e).__name__}: {e}. Check the connection's host."),
                    endpoint=endpoint,
                ) from e
            else:
                execution_id = response.headers.get(responses.EXECUTION_ID_HEADER)
                self.log.info(
                    "Knit POST %s answered HTTP %s in %.2fs (attempt %d, %s: %s)",
                    endpoint,
                    response.status_code,
                    response.elapsed.total_seconds(),
                    attempt,
                    responses.EXECUTION_ID_HEADER,
                    execution_id or "none",
                )
                if not is_transient_status(response.status_code):
                    return responses.read_answer(response, endpoint, execution_id, knit.conn_id, redact), (execution_id)
                failure = responses.transient_failure(
                    response,
                    execution_id,
                    redact,
                    retry_after=parse_retry_after(response.headers.get("Retry-After"), self._clock.now()),
                )
            if may_resend is not None:
                may_resend(failure)
            wait = policy.wait(failure.retry_after, attempt, self._rng)
            elapsed = self._clock.monotonic() - started
            if attempt >= policy.max_attempts or elapsed + wait >= policy.max_elapsed:
                raise self._gave_up(endpoint, failure, attempt, elapsed, wait, policy) from failure.cause
            self.log.warning(
                "Knit POST %s failed (%s); attempt %d of %d, retrying in %.1fs%s",
                endpoint,
                failure.reason,
                attempt,
                policy.max_attempts,
                wait,
                " as Knit's Retry-After asks" if failure.retry_after is not None else "",
            )
            self._clock.sleep(wait)

    def _gave_up(
        self,
        endpoint: str,
        failure: responses.Failure,
        attempt: int,
        elapsed: float,
        wait: float,
        policy: RetryPolicy,
    ) -> KnitTransientError:
        """Build the error for a transient failure that outlived its retry budget."""
        attempts = f"{attempt} attempt{'s' if attempt > 1 else ''}"
        if attempt >= policy.max_attempts:
            why = f"after {attempts} in {elapsed:.0f}s"
        else:
            why = (
                f"after {attempts}: the next wait ({wait:.0f}s) would pass the retry budget of "
                f"{policy.max_elapsed:.0f}s (max_retry_seconds)"
            )
        return KnitTransientError(
            f"Knit POST {endpoint} still failing {why}: {failure.reason}. Knit or the network is "
            f"unavailable; the task can be retried later.{responses.execution_suffix(failure.execution_id)}",
            attempts=attempt,
            status_code=failure.status_code,
            knit_message=failure.knit_message,
            execution_id=failure.execution_id,
            endpoint=endpoint,
        )
