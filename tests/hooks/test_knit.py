"""KnitHook against Knit's API mocked at the transport: requests, answers, errors and retries."""

from __future__ import annotations

import json

import pytest
import requests
from knit_hook_fakes import API_KEY, BASE, WEBHOOK_SECRET

from knit_provider.exceptions import (
    KnitAuthError,
    KnitConfigurationError,
    KnitError,
    KnitRequestError,
    KnitResponseError,
    KnitTerminalError,
    KnitTransientError,
)
from knit_provider.hooks.knit import SyncStarted, SyncUpdated

START = f"{BASE}/v1.0/sync.start"
UPDATE = f"{BASE}/v1.0/sync.update"
MODELS = ["application_info", "application_stage"]
OK = {"success": True, "data": {"syncJobId": "sj_1", "syncRunId": "sr_1"}}


def found_nothing(first_attempt):
    """A recover that finds no run: the hook may send sync.start again after an unknown outcome."""
    return None


def start(hook, **kwargs):
    args = {"data_type": "ats_applications", "models": MODELS}
    args.update(kwargs)
    return hook.start_sync(**args)


def test_start_sync_sends_knits_body_and_headers(make_hook, requests_mock):
    requests_mock.post(START, json=OK, headers={"X-Knit-Execution-Id": "ex_1"})
    result = start(make_hook(), integration_id="int_42")

    assert result == SyncStarted(sync_job_id="sj_1", sync_run_id="sr_1", execution_id="ex_1", integration_id="int_42")
    sent = requests_mock.request_history[0]
    assert sent.method == "POST"
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["X-Knit-Integration-Id"] == "int_42"
    assert sent.headers["Content-Type"] == "application/json"
    # Knit's "Start a sync" reference: no destination (Knit pushes to the category's webhook), no frequency.
    assert sent.json() == {"dataType": "ats_applications", "models": MODELS}
    assert sent.timeout == 30.0


def test_start_sync_sends_every_documented_field_when_given(make_hook, requests_mock):
    requests_mock.post(START, json=OK)
    start(
        make_hook(),
        sync_type="delta_sync",
        honor_scheduler=False,
        include_inactive_records=True,
        start_hour=0,
        start_minute=59,
    )
    assert requests_mock.request_history[0].json() == {
        "dataType": "ats_applications",
        "models": MODELS,
        "syncType": "delta_sync",
        "honorScheduler": False,
        "includeInactiveRecords": True,
        "startHour": 0,
        "startMinute": 59,
    }


def test_start_sync_sends_destination_and_frequency_only_when_the_caller_set_them(make_hook, requests_mock):
    requests_mock.post(START, json=OK)
    start(make_hook(), destination="https://hooks.example/knit", frequency="high")
    body = requests_mock.request_history[0].json()
    assert (body["destination"], body["frequency"]) == ("https://hooks.example/knit", "high")


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"start_hour": 24}, "start_hour must be a whole number from 0 to 23 (Knit reads it as UTC), got 24."),
        ({"start_hour": -1}, "start_hour must be a whole number from 0 to 23 (Knit reads it as UTC), got -1."),
        ({"start_minute": 60}, "start_minute must be a whole number from 0 to 59 (Knit reads it as UTC), got 60."),
        ({"start_minute": "5"}, "start_minute must be a whole number from 0 to 59 (Knit reads it as UTC), got '5'."),
        ({"start_hour": True}, "start_hour must be a whole number from 0 to 23 (Knit reads it as UTC), got True."),
    ],
)
def test_a_start_time_knit_cannot_read_fails_before_any_call(make_hook, requests_mock, kwargs, complaint):
    with pytest.raises(KnitConfigurationError) as info:
        start(make_hook(), **kwargs)
    assert str(info.value) == complaint
    assert requests_mock.call_count == 0


def test_integration_id_defaults_to_the_connection_extra(make_hook, requests_mock):
    requests_mock.post(START, json=OK)
    assert start(make_hook()).integration_id == "int_default"
    assert requests_mock.request_history[0].headers["X-Knit-Integration-Id"] == "int_default"


def test_missing_integration_id_fails_before_any_call(make_hook, requests_mock):
    hook = make_hook({"extra": {}})
    with pytest.raises(KnitConfigurationError, match="integration_id"):
        start(hook)
    assert requests_mock.call_count == 0


def test_missing_api_key_is_a_clear_configuration_error(make_hook, requests_mock):
    with pytest.raises(KnitConfigurationError, match="password to your Knit API key"):
        start(make_hook({"password": ""}))
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"models": []}, "models"),
        ({"destination": " "}, "destination"),
        ({"frequency": ""}, "frequency"),
        ({"data_type": ""}, "data_type"),
    ],
)
def test_blank_arguments_fail_before_any_call(make_hook, requests_mock, kwargs, complaint):
    with pytest.raises(KnitConfigurationError, match=complaint):
        start(make_hook(), **kwargs)
    assert requests_mock.call_count == 0


def test_sync_run_id_is_none_when_knit_gives_none(make_hook, requests_mock):
    requests_mock.post(START, json={"success": True, "data": {"syncJobId": "sj_9"}})
    result = start(make_hook())
    assert (result.sync_job_id, result.sync_run_id, result.execution_id) == ("sj_9", None, None)


def test_success_without_sync_job_id_is_a_response_error(make_hook, requests_mock):
    requests_mock.post(
        START, json={"success": True, "data": {"syncRunId": "sr_1"}}, headers={"X-Knit-Execution-Id": "ex_7"}
    )
    with pytest.raises(KnitResponseError) as info:
        start(make_hook())
    assert "without data.syncJobId" in str(info.value)
    assert "data keys: ['syncRunId']" in str(info.value)
    assert "[X-Knit-Execution-Id: ex_7]" in str(info.value)
    assert info.value.execution_id == "ex_7"


def test_success_false_inside_a_200_is_a_request_error(make_hook, requests_mock):
    requests_mock.post(START, json={"success": False, "error": {"msg": "Integration not found"}})
    with pytest.raises(KnitRequestError) as info:
        start(make_hook())
    assert info.value.status_code == 200
    assert info.value.knit_message == "Integration not found"
    assert "success: false (Integration not found)" in str(info.value)
    assert requests_mock.call_count == 1


def test_non_json_body_is_a_response_error(make_hook, requests_mock):
    requests_mock.post(START, text="<html>maintenance</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(KnitResponseError) as info:
        start(make_hook())
    text = str(info.value)
    assert "not a JSON object" in text
    assert "'text/html'" in text
    assert "<html>maintenance</html>" in text
    assert requests_mock.call_count == 1


def test_json_without_knits_envelope_is_a_response_error(make_hook, requests_mock):
    requests_mock.post(START, json={"syncJobId": "sj_1"})
    with pytest.raises(KnitResponseError, match="not in Knit's envelope"):
        start(make_hook())


def test_a_4xx_fails_at_once_with_knits_message(make_hook, requests_mock, clock):
    requests_mock.post(
        START,
        status_code=400,
        json={"success": False, "error": {"msg": "dataType is invalid"}},
        headers={"X-Knit-Execution-Id": "ex_4"},
    )
    with pytest.raises(KnitRequestError) as info:
        start(make_hook())
    error = info.value
    assert (error.status_code, error.knit_message, error.execution_id, error.endpoint) == (
        400,
        "dataType is invalid",
        "ex_4",
        "/v1.0/sync.start",
    )
    assert str(error) == (
        "Knit refused POST /v1.0/sync.start (HTTP 400: dataType is invalid). Fix the request or the "
        "connection; retrying will not help. [X-Knit-Execution-Id: ex_4]"
    )
    assert requests_mock.call_count == 1
    assert clock.sleeps == []


def test_a_4xx_without_envelope_shows_the_body(make_hook, requests_mock):
    requests_mock.post(START, status_code=404, text="Not Found")
    with pytest.raises(KnitRequestError) as info:
        start(make_hook())
    assert info.value.knit_message is None
    assert "HTTP 404: no Knit error message; body 'Not Found'" in str(info.value)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_auth_errors_and_not_retried(make_hook, requests_mock, status):
    requests_mock.post(START, status_code=status, json={"success": False, "error": {"msg": "Invalid API key"}})
    with pytest.raises(KnitAuthError) as info:
        start(make_hook())
    assert isinstance(info.value, KnitTerminalError)
    assert f"Knit rejected the API key of connection 'knit_test' (HTTP {status}: Invalid API key)" in str(info.value)
    assert requests_mock.call_count == 1


def test_a_redirect_is_not_followed(make_hook, requests_mock):
    requests_mock.post(START, status_code=302, headers={"Location": "https://login.example/"})
    with pytest.raises(KnitRequestError, match=r"redirected .*https://login\.example/"):
        start(make_hook())
    assert requests_mock.call_count == 1


def test_5xx_is_retried_with_exponential_backoff_and_jitter(make_hook, requests_mock, clock):
    requests_mock.post(START, [{"status_code": 503}, {"status_code": 502}, {"status_code": 500}, {"json": OK}])
    assert start(make_hook(), recover=found_nothing).sync_job_id == "sj_1"
    assert requests_mock.call_count == 4
    # Equal jitter: retry n waits between half and all of min(30, 1 * 2**(n-1)) seconds.
    assert len(clock.sleeps) == 3
    for n, wait in enumerate(clock.sleeps, start=1):
        ceiling = 2 ** (n - 1)
        assert ceiling / 2 <= wait <= ceiling
    assert len(set(clock.sleeps)) == 3


def test_retries_stop_after_max_attempts(make_hook, requests_mock, clock):
    requests_mock.post(
        START,
        status_code=500,
        json={"success": False, "error": {"msg": "boom"}},
        headers={"X-Knit-Execution-Id": "ex_5"},
    )
    with pytest.raises(KnitTransientError) as info:
        start(make_hook(max_attempts=3), recover=found_nothing)
    error = info.value
    assert requests_mock.call_count == 3
    assert len(clock.sleeps) == 2
    assert error.attempts == 3
    assert (error.status_code, error.knit_message, error.execution_id) == (500, "boom", "ex_5")
    assert "still failing after 3 attempts" in str(error)
    assert "HTTP 500 Internal Server Error (Knit said: boom)" in str(error)
    assert "[X-Knit-Execution-Id: ex_5]" in str(error)


def test_backoff_is_capped(knit_conn, clock, requests_mock):
    import random

    from knit_provider.hooks.knit import KnitHook

    requests_mock.post(START, status_code=503)
    hook = KnitHook(knit_conn(), max_attempts=10, max_retry_seconds=10_000, clock=clock, rng=random.Random(1))
    with pytest.raises(KnitTransientError):
        start(hook, recover=found_nothing)
    assert len(clock.sleeps) == 9
    assert max(clock.sleeps) <= 30.0
    assert min(clock.sleeps[6:]) >= 15.0  # 2**6 > 30: the cap, halved by jitter at most


def test_retry_after_in_seconds_is_honoured(make_hook, requests_mock, clock):
    requests_mock.post(START, [{"status_code": 429, "headers": {"Retry-After": "7"}}, {"json": OK}])
    start(make_hook())
    assert len(clock.sleeps) == 1
    assert 7.0 <= clock.sleeps[0] <= 7.0 * 1.5  # at least what Knit asked, spread so callers do not return together


def test_retry_after_as_http_date_is_honoured(make_hook, requests_mock, clock):
    # The fake clock reads 2030-01-01 12:00:00 UTC; Knit asks to come back 42 seconds later.
    requests_mock.post(
        START, [{"status_code": 503, "headers": {"Retry-After": "Tue, 01 Jan 2030 12:00:42 GMT"}}, {"json": OK}]
    )
    start(make_hook(), recover=found_nothing)
    assert len(clock.sleeps) == 1
    assert 42.0 <= clock.sleeps[0] <= 42.0 * 1.5


def test_retry_after_beyond_the_budget_fails_at_once(make_hook, requests_mock, clock):
    requests_mock.post(START, status_code=429, headers={"Retry-After": "3600"})
    with pytest.raises(KnitTransientError) as info:
        start(make_hook(max_retry_seconds=60))
    assert requests_mock.call_count == 1
    assert clock.sleeps == []
    assert "the next wait (3600s) would pass the retry budget of 60s" in str(info.value)


@pytest.mark.parametrize("header", ["²", "١٢", "-1", "soon"])
def test_an_unreadable_retry_after_falls_back_to_backoff(make_hook, requests_mock, clock, header, all_logs):
    requests_mock.post(START, [{"status_code": 429, "headers": {"Retry-After": header}}, {"json": OK}])
    assert start(make_hook()).sync_job_id == "sj_1"
    assert len(clock.sleeps) == 1
    assert 0.5 <= clock.sleeps[0] <= 1.0  # the first backoff step, not the header's value
    assert f"Ignoring Retry-After {header!r}" in all_logs()


def test_a_retry_after_of_hundreds_of_digits_fails_at_once_with_a_readable_wait(make_hook, requests_mock, clock):
    requests_mock.post(START, status_code=503, headers={"Retry-After": "9" * 400})
    with pytest.raises(KnitTransientError) as info:
        start(make_hook(max_retry_seconds=60), recover=found_nothing)
    assert requests_mock.call_count == 1
    assert clock.sleeps == []
    assert "the next wait (86400s) would pass the retry budget of 60s" in str(info.value)


def test_total_time_budget_bounds_the_retries(make_hook, requests_mock, clock):
    requests_mock.post(START, status_code=503)
    with pytest.raises(KnitTransientError):
        start(make_hook(max_attempts=100, max_retry_seconds=20), recover=found_nothing)
    assert clock.t < 20
    assert 3 <= requests_mock.call_count < 100


def test_each_attempt_times_out_within_the_remaining_budget(make_hook, requests_mock, clock):
    requests_mock.post(START, [{"status_code": 429, "headers": {"Retry-After": "8"}}, {"json": OK}])
    start(make_hook(timeout=30, max_retry_seconds=20))
    first, second = [r.timeout for r in requests_mock.request_history]
    assert first == 20.0
    assert second == pytest.approx(20.0 - clock.sleeps[0])
    assert second <= 12.0


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectionError("refused"),
        requests.ConnectTimeout("slow connect"),
        requests.ReadTimeout("slow answer"),
        requests.exceptions.ChunkedEncodingError("cut"),
    ],
)
def test_network_failures_of_sync_update_are_retried(make_hook, requests_mock, clock, error):
    requests_mock.post(UPDATE, [{"exc": error}, {"json": {"success": True, "data": {}}}])
    assert make_hook().update_sync("sj_1", "ats_applications", frequency="high").sync_job_id == "sj_1"
    assert requests_mock.call_count == 2
    assert len(clock.sleeps) == 1


def test_network_failures_exhaust_into_a_transient_error(make_hook, requests_mock):
    requests_mock.post(UPDATE, exc=requests.ConnectionError("connection refused"))
    with pytest.raises(KnitTransientError) as info:
        make_hook(max_attempts=2).update_sync("sj_1", "ats_applications", frequency="high")
    assert info.value.status_code is None
    assert isinstance(info.value.__cause__, requests.ConnectionError)
    assert "ConnectionError: connection refused" in str(info.value)


def test_retry_settings_come_from_extras_and_hook_arguments_win(make_hook, requests_mock):
    requests_mock.post(START, status_code=503)
    hook = make_hook({"extra": {"integration_id": "i", "max_attempts": "2", "timeout": "4.5"}})
    with pytest.raises(KnitTransientError):
        start(hook, recover=found_nothing)
    assert requests_mock.call_count == 2
    assert requests_mock.request_history[0].timeout == 4.5

    requests_mock.reset_mock()
    with pytest.raises(KnitTransientError):
        start(make_hook({"extra": {"integration_id": "i", "max_attempts": 2}}, max_attempts=4), recover=found_nothing)
    assert requests_mock.call_count == 4


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ({"max_attempts": "many"}, "Extra 'max_attempts' of connection 'knit_test' must be a int"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"max_retry_seconds": -1}, "max_retry_seconds must be a positive"),
        ({"timeout": 0}, "timeout must be a positive"),
    ],
)
def test_bad_retry_settings_are_configuration_errors(make_hook, requests_mock, extra, complaint):
    with pytest.raises(KnitConfigurationError, match=complaint):
        start(make_hook({"extra": {"integration_id": "i", **extra}}))
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("fields", "base"),
    [
        ({"host": None}, "https://api.getknit.dev"),
        ({"host": "http://127.0.0.1:8765"}, "http://127.0.0.1:8765"),
        ({"host": "http://127.0.0.1", "port": 8765}, "http://127.0.0.1:8765"),
        ({"host": "api.getknit.dev"}, "https://api.getknit.dev"),
        ({"host": "localhost", "port": 9000, "schema": "http"}, "http://localhost:9000"),
        ({"host": "https://api.getknit.dev/"}, "https://api.getknit.dev"),
    ],
)
def test_host_forms(make_hook, requests_mock, fields, base):
    requests_mock.post(f"{base}/v1.0/sync.start", json=OK)
    start(make_hook(fields))
    assert requests_mock.request_history[0].url == f"{base}/v1.0/sync.start"


def test_connection_uri_with_scheme_in_host(monkeypatch, requests_mock):
    from knit_provider.hooks.knit import KnitHook

    monkeypatch.setenv("AIRFLOW_CONN_KNIT_URI", f"knit://http://:{API_KEY}@127.0.0.1:8765?integration_id=i1")
    requests_mock.post("http://127.0.0.1:8765/v1.0/sync.start", json=OK)
    assert start(KnitHook("knit_uri")).integration_id == "i1"


def test_a_host_that_is_not_http_is_refused(make_hook):
    with pytest.raises(KnitConfigurationError, match="not an http"):
        start(make_hook({"host": "ftp://knit.example"}))


def test_extras_are_never_sent_as_headers(make_hook, requests_mock):
    requests_mock.post(START, json=OK)
    start(make_hook({"extra": {"integration_id": "i", "webhook_secret": WEBHOOK_SECRET}}))
    sent = requests_mock.request_history[0]
    assert WEBHOOK_SECRET not in json.dumps(dict(sent.headers))
    assert "webhook_secret" not in {k.lower() for k in sent.headers}


def test_update_sync_posts_the_job_id_under_both_readings_and_the_changes(make_hook, requests_mock):
    requests_mock.post(UPDATE, json={"success": True, "data": {}}, headers={"X-Knit-Execution-Id": "ex_u"})
    result = make_hook().update_sync("sj_1", "ats_applications", models=["application_info"], frequency="high")
    assert result == SyncUpdated(sync_job_id="sj_1", execution_id="ex_u", integration_id="int_default")
    assert requests_mock.request_history[0].json() == {
        "syncJobId": "sj_1",
        "jobId": "sj_1",
        "models": ["application_info"],
        "frequency": "high",
        "dataType": "ats_applications",
    }


def test_update_sync_sends_only_the_keys_asked_for_and_the_data_type(make_hook, requests_mock):
    requests_mock.post(UPDATE, json={"success": True, "data": {}})
    make_hook().update_sync("sj_1", "ats_applications", frequency="high", job_id_keys=("syncJobId",))
    assert requests_mock.request_history[0].json() == {
        "syncJobId": "sj_1",
        "frequency": "high",
        "dataType": "ats_applications",
    }


@pytest.mark.parametrize("keys", [(), ("",), ("syncJobId", " ")])
def test_update_sync_refuses_job_id_keys_that_name_no_key(make_hook, requests_mock, keys):
    with pytest.raises(KnitConfigurationError, match="job_id_keys"):
        make_hook().update_sync("sj_1", "ats_applications", frequency="high", job_id_keys=keys)
    assert requests_mock.call_count == 0


def test_update_sync_refused_says_the_job_id_key_is_unconfirmed(make_hook, requests_mock):
    requests_mock.post(
        UPDATE,
        status_code=400,
        json={"success": False, "error": {"msg": "Unknown field jobId"}},
        headers={"X-Knit-Execution-Id": "ex_k"},
    )
    with pytest.raises(KnitRequestError) as info:
        make_hook().update_sync("sj_1", "ats_applications", frequency="high")
    error = info.value
    assert (error.status_code, error.knit_message, error.execution_id) == (400, "Unknown field jobId", "ex_k")
    assert "Unknown field jobId" in str(error)
    assert "sent 'sj_1' as 'syncJobId' and 'jobId'" in str(error)
    assert "pass job_id_keys with the one key Knit reads" in str(error)
    assert isinstance(error.__cause__, KnitRequestError)


@pytest.mark.parametrize("data_type", [None, "", " "])
def test_update_sync_without_a_data_type_is_refused_before_any_call(make_hook, requests_mock, data_type):
    # Knit's "Update a sync" reference marks dataType required.
    with pytest.raises(KnitConfigurationError, match="data_type is required"):
        make_hook().update_sync("sj_1", data_type, frequency="high")
    assert requests_mock.call_count == 0


def test_update_sync_with_nothing_to_change_is_refused(make_hook, requests_mock):
    with pytest.raises(KnitConfigurationError, match="changes nothing"):
        make_hook().update_sync("sj_1", "ats_applications")
    assert requests_mock.call_count == 0


def test_update_sync_maps_errors_like_every_call(make_hook, requests_mock):
    requests_mock.post(UPDATE, status_code=404, json={"success": False, "error": {"msg": "no such job"}})
    with pytest.raises(KnitRequestError, match="no such job"):
        make_hook().update_sync("sj_x", "ats_applications", destination="https://hooks.example/new")


@pytest.mark.parametrize(
    ("answer", "ok", "says"),
    [
        (
            {"status_code": 400, "json": {"success": False, "error": {"msg": "syncJobId is required"}}},
            True,
            "API key was accepted",
        ),
        ({"status_code": 200, "json": {"success": True, "data": {}}}, True, "API key was accepted"),
        ({"status_code": 401, "json": {"success": False, "error": {"msg": "bad key"}}}, False, "rejected the API key"),
        ({"status_code": 404, "text": "<h1>Not Found</h1>"}, False, "without Knit's error envelope"),
        ({"status_code": 503}, False, "still failing after 1 attempt"),
        ({"exc": requests.ConnectionError("refused")}, False, "ConnectionError: refused"),
    ],
)
def test_test_connection(make_hook, requests_mock, clock, answer, ok, says):
    requests_mock.post(UPDATE, **answer)
    result, message = make_hook().test_connection()
    assert result is ok
    assert says in message
    assert requests_mock.call_count == 1
    assert requests_mock.request_history[0].json() == {}
    assert clock.sleeps == []


def test_test_connection_reports_configuration_problems(make_hook):
    ok, message = make_hook({"password": None}).test_connection()
    assert not ok
    assert "no API key" in message


def test_webhook_secret_is_the_extra_else_the_api_key(make_hook):
    assert make_hook().get_webhook_secret() == API_KEY
    hook = make_hook({"extra": {"webhook_secret": WEBHOOK_SECRET}})
    assert hook.get_webhook_secret() == WEBHOOK_SECRET


def test_connection_form_hides_unused_fields_and_names_the_key():
    from knit_provider.hooks.knit import KnitHook

    behaviour = KnitHook.get_ui_field_behaviour()
    assert set(behaviour["hidden_fields"]) == {"login", "schema", "port"}
    assert behaviour["relabeling"]["password"] == "API key"
    assert behaviour["placeholders"]["host"] == "https://api.getknit.dev"
    assert (KnitHook.conn_type, KnitHook.hook_name, KnitHook.default_conn_name) == ("knit", "Knit", "knit_default")


def test_errors_survive_airflow_serialization_with_their_fields():
    error = KnitTransientError(
        "down", attempts=3, status_code=503, knit_message="m", execution_id="e", endpoint="/v1.0/sync.start"
    )
    path, args, kwargs = error.serialize()
    assert path == "knit_provider.exceptions.KnitTransientError"
    again = KnitTransientError(*args, **kwargs)
    assert (str(again), again.attempts, again.status_code, again.execution_id) == ("down", 3, 503, "e")
    assert isinstance(again, KnitError)


def test_terminal_errors_tell_airflow_not_to_retry():
    from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

    assert issubclass(KnitTerminalError, AirflowFailException)
    assert not issubclass(KnitTransientError, AirflowFailException)
    assert issubclass(KnitTransientError, AirflowException)


LEAKY_ANSWERS = [
    pytest.param(
        [{"status_code": 401, "json": {"success": False, "error": {"msg": f"bad key {API_KEY}"}}}],
        KnitAuthError,
        id="401-echoing-key",
    ),
    pytest.param(
        [{"status_code": 400, "json": {"success": False, "error": {"msg": f"{API_KEY} invalid"}}}],
        KnitRequestError,
        id="400-echoing-key",
    ),
    pytest.param(
        [{"status_code": 200, "json": {"success": False, "error": {"msg": API_KEY}}}],
        KnitRequestError,
        id="success-false-echoing-key",
    ),
    pytest.param([{"status_code": 200, "text": f"<p>key={API_KEY}</p>"}], KnitResponseError, id="html-echoing-key"),
    pytest.param(
        [{"status_code": 503, "json": {"success": False, "error": {"msg": f"k={API_KEY}"}}}] * 2,
        KnitTransientError,
        id="5xx-echoing-key",
    ),
    pytest.param(
        [{"json": {"success": True, "data": {"syncRunId": "sr", "echo": API_KEY}}}],
        KnitResponseError,
        id="missing-job-id",
    ),
    pytest.param([{"exc": requests.ConnectionError("refused")}] * 2, KnitTransientError, id="network"),
]


@pytest.mark.parametrize(("answers", "error_type"), LEAKY_ANSWERS)
def test_the_api_key_is_never_logged_nor_in_error_texts(make_hook, requests_mock, all_logs, answers, error_type):
    requests_mock.post(START, answers)
    hook = make_hook({"extra": {"integration_id": "i", "webhook_secret": WEBHOOK_SECRET}}, max_attempts=2)
    with pytest.raises(error_type) as info:
        start(hook, recover=found_nothing)

    logged = all_logs()
    assert "Knit POST /v1.0/sync.start" in logged, "the hook's own lines must be captured for this to test"
    texts = [logged, str(info.value), repr(info.value.args), str(info.value.knit_message), repr(hook.knit)]
    for secret in (API_KEY, WEBHOOK_SECRET):
        assert all(secret not in text for text in texts)
