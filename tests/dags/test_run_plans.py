"""The run-time decisions of the DAGs: param checks, integrations, initial vs delta, backfill detection."""

from __future__ import annotations

from types import SimpleNamespace

import psycopg2
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from knit_landing_helpers import ATS_APPLICATION_MODELS

from knit_provider.run_plans import (
    DELTA_SYNC,
    INITIAL_SYNC,
    integrations_with_completed_run,
    is_backfill,
    plan_syncs,
    resolve_destination,
    resolve_integrations,
    resolve_scheduling,
    validate_sync_params,
)

GOOD = {
    "integration_ids": ["int_a", "int_b"],
    "models": ["application_info"],
    "full_resync": False,
    "destination": "",
}


def test_valid_params_come_back_clean() -> None:
    """Lists are read as every task reads them: blanks and duplicates dropped, text accepted."""
    cleaned = validate_sync_params(
        {**GOOD, "integration_ids": [" int_a ", "", "int_a"], "models": ["application_info", "application_info"]}
    )
    assert cleaned["integration_ids"] == ["int_a"]
    assert cleaned["models"] == ["application_info"]
    assert validate_sync_params({**GOOD, "integration_ids": "int_a, int_b"})["integration_ids"] == ["int_a", "int_b"]
    assert validate_sync_params({**GOOD, "integration_ids": '["int_c"]'})["integration_ids"] == ["int_c"]


def test_fields_left_empty_in_the_form_mean_not_set() -> None:
    """The trigger form sends an emptied field as None."""
    cleaned = validate_sync_params({**GOOD, "integration_ids": None, "destination": None})
    assert cleaned["integration_ids"] == []
    assert cleaned["destination"] == ""


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"integration_ids": [42]}, "integration_ids must be a list of strings"),
        ({"integration_ids": "['int_a'"}, "integration_ids=\"['int_a'\" looks like a list but cannot be read"),
        ({"models": []}, "models must name at least one model id"),
        ({"models": "None"}, "models must name at least one model id"),
        ({"models": ["application_info", "application_salary"]}, "unknown model ids ['application_salary']"),
        ({"frequency": "hourly"}, "frequency must be empty or one of standard, medium, high"),
        ({"full_resync": "yes"}, "full_resync must be true or false"),
        ({"honor_scheduler": None}, "honor_scheduler must be true or false"),
        ({"include_inactive_records": "no"}, "include_inactive_records must be empty, true or false"),
        ({"start_hour": 24}, "start_hour must be empty or a whole number from 0 to 23"),
        ({"start_hour": True}, "start_hour must be empty or a whole number from 0 to 23"),
        ({"start_minute": 60, "start_hour": 1}, "start_minute must be empty or a whole number from 0 to 59"),
        ({"start_minute": 30}, "start_minute (30) needs start_hour"),
        ({"scheduling": "cron"}, "scheduling must be empty or one of airflow, knit"),
        ({"all_active": "yes"}, "all_active must be true or false"),
        ({"all_active": True}, "integration_ids must be empty"),
    ],
)
def test_bad_params_say_what_to_fix(change: dict[str, object], says: str) -> None:
    """A bad param fails the task at once (AirflowFailException), naming the param."""
    with pytest.raises(AirflowFailException, match="param") as raised:
        validate_sync_params({**GOOD, **change})
    assert says in str(raised.value)


def test_unknown_model_error_lists_the_valid_ids() -> None:
    with pytest.raises(ValueError, match="unknown model ids") as raised:
        validate_sync_params({**GOOD, "models": ["nope"]})
    assert all(model in str(raised.value) for model in ATS_APPLICATION_MODELS)


def test_integrations_default_to_the_connection_and_are_never_empty() -> None:
    assert resolve_integrations(["x"], {"integration_id": "conn"}) == ["x"]
    assert resolve_integrations([], {"integration_id": "conn"}) == ["conn"]
    with pytest.raises(AirflowFailException, match="integration_id extra"):
        resolve_integrations([], {})


def test_the_registrys_active_integrations_come_before_the_connections_default() -> None:
    conn = {"integration_id": "conn"}
    assert resolve_integrations([], conn, ["int_a", "int_b"]) == ["int_a", "int_b"]
    assert resolve_integrations(["x"], conn, ["int_a"]) == ["x"], "ids typed in the form win"
    assert resolve_integrations([], conn, []) == ["conn"], "an empty registry falls back to the connection"
    assert resolve_integrations([], conn, ["int_a"], all_active=True) == ["int_a"]
    with pytest.raises(ValueError, match="all_active asks for every active integration of the registry"):
        resolve_integrations([], conn, [], all_active=True)
    assert validate_sync_params({**GOOD, "integration_ids": None, "all_active": True})["all_active"] is True
    with pytest.raises(ValueError, match="'conn' is disabled or failed Knit's validation"):
        resolve_integrations([], conn, [], {"conn"})
    assert resolve_integrations(["conn"], conn, [], {"conn"}) == ["conn"], "typed by hand: synced"


def test_knit_settings_are_sent_only_when_set_and_knits_schedule_is_kept_by_default() -> None:
    cleaned = validate_sync_params(GOOD)
    assert (cleaned["frequency"], cleaned["include_inactive_records"], cleaned["start_hour"]) == (None, None, None)
    assert cleaned["honor_scheduler"] is True
    chosen = validate_sync_params({**GOOD, "frequency": "high", "start_hour": 0, "start_minute": 0})
    assert (chosen["frequency"], chosen["start_hour"], chosen["start_minute"]) == ("high", 0, 0)


def test_scheduling_param_then_env_then_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KNIT_SCHEDULING", raising=False)
    assert resolve_scheduling(None) == "airflow"
    monkeypatch.setenv("KNIT_SCHEDULING", "knit")
    assert resolve_scheduling(None) == "knit"
    assert resolve_scheduling("airflow") == "airflow", "the param wins"
    monkeypatch.setenv("KNIT_SCHEDULING", "sometimes")
    with pytest.raises(AirflowFailException, match=r"\$KNIT_SCHEDULING='sometimes' is not a scheduling mode"):
        resolve_scheduling(None)


def test_destination_param_then_env_then_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KNIT_WEBHOOK_URL", raising=False)
    extra = {"webhook_url": "https://conn.example/knit/webhook"}
    assert resolve_destination("https://param.example/hook", extra) == "https://param.example/hook"
    assert resolve_destination("", extra) == "https://conn.example/knit/webhook"
    monkeypatch.setenv("KNIT_WEBHOOK_URL", "https://env.example/hook")
    assert resolve_destination("", extra) == "https://env.example/hook"
    monkeypatch.delenv("KNIT_WEBHOOK_URL")
    assert resolve_destination("", {}) == "", "none set: Knit delivers to the webhook configured for the category"
    with pytest.raises(ValueError, match="must start with https://"):
        resolve_destination("ftp://x", {})


def test_first_sync_is_initial_then_deltas_unless_full_resync() -> None:
    plan = plan_syncs(["new", "old"], full_resync=False, completed={"old"}, destination="https://d")
    assert [(p["integration_id"], p["sync_type"]) for p in plan] == [("new", INITIAL_SYNC), ("old", DELTA_SYNC)]
    plan = plan_syncs(["old"], full_resync=True, completed={"old"}, destination="https://d")
    assert plan[0]["sync_type"] == INITIAL_SYNC
    assert plan[0]["destination"] == "https://d"
    assert (plan[0]["adopt_since"], plan[0]["adopt_grace"]) == (None, None), "this DAG always calls sync.start"


def test_backfill_is_told_by_the_run_type() -> None:
    assert is_backfill({"dag_run": SimpleNamespace(run_type="backfill")})
    assert not is_backfill({"dag_run": SimpleNamespace(run_type="scheduled")})
    assert not is_backfill({"dag_run": SimpleNamespace(run_type="manual")})


def test_only_completed_application_runs_count(landing_url: str) -> None:
    conn = psycopg2.connect(landing_url)
    try:
        with conn, conn.cursor() as cur:
            rows = [
                ("r1", "done", "ats_applications", "now()"),
                ("r2", "running", "ats_applications", "NULL"),
                ("r3", "jobs_only", "ats_jobs", "now()"),
            ]
            for run_id, integration, data_type, consumed in rows:
                cur.execute(
                    "INSERT INTO knit_landing.sync_runs (sync_run_id, sync_job_id, integration_id, sync_data_type,"
                    " first_seq, first_received_at, last_received_at, complete_at)"
                    f" VALUES (%s, 'job', %s, %s, 1, now(), now(), {consumed})",
                    (run_id, integration, data_type),
                )
        found = integrations_with_completed_run(conn, ["done", "running", "jobs_only", "absent"])
    finally:
        conn.close()
    assert found == {"done"}
