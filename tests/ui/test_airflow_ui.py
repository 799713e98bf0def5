"""The Airflow UI as a user meets it, in a real browser: DAG list, trigger forms, backfill dialog,
the ``knit`` connection form, the Knit link on ``start_sync`` and the Knit syncs page.

Every other test triggers through the REST API or ``airflow dags test``, which skip the form; these
click through it, against a real API server, scheduler, DAG processor and triggerer, the Knit
simulator and the receiver. One story in file order: later tests look at what earlier runs left.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote

import pytest
from knit_landing_helpers import Lander, ids
from knit_ui_stack import INTEGRATION, MAIN, ON_DELIVERY, SYNC_JOB_URL, USERNAME, UiStack, screenshot
from playwright.sync_api import expect

from knit_devtools.services import wait_until
from knit_provider.data_types import get

pytestmark = pytest.mark.e2e


def _runs(ui: UiStack, dag_id: str) -> list[dict[str, Any]]:
    return ui.cluster.dag_runs(dag_id)


def _open_trigger_dialog(page: Any, ui: UiStack, dag_id: str) -> Any:
    page.goto(f"{ui.url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog").first
    expect(dialog.get_by_text(f"Trigger Dag - {dag_id}")).to_be_visible()
    return dialog


def _submitted_run_id(page: Any, ui: UiStack, dag_id: str) -> str:
    """The run the form created: the UI goes to its page."""
    prefix = f"{ui.url}/dags/{dag_id}/runs/"
    page.wait_for_url(re.compile(re.escape(prefix) + ".+"))
    return unquote(page.url[len(prefix) :].split("/")[0])


def test_login_then_the_dag_list_shows_both_dags(browser_context: Any, ui: UiStack) -> None:
    browser_context.clear_cookies()
    page = browser_context.new_page()
    try:
        page.goto(f"{ui.url}/dags")
        page.wait_for_url(re.compile(r".*/auth/login.*"))
        page.locator("input[name=username]").fill(USERNAME)
        page.locator("input[name=password]").fill(ui.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{ui.url}/dags")
        for dag_id in (MAIN, ON_DELIVERY):
            expect(page.get_by_role("link", name=dag_id, exact=True).first).to_be_visible()
        assert any(cookie["name"] == "_token" for cookie in browser_context.cookies())
    finally:
        page.close()


def test_main_trigger_form_submits_with_its_defaults_and_the_run_succeeds(page: Any, ui: UiStack) -> None:
    page.set_viewport_size({"width": 1280, "height": 1500})  # the whole form in view, for its picture
    dialog = _open_trigger_dialog(page, ui, MAIN)
    # The defaults as they open: no integration (the connection's), all six models, Knit's schedule kept;
    # Knit's own settings (frequency, start time, ...) folded away and empty, so none is sent.
    expect(dialog.locator("textarea[name=element_integration_ids]")).to_have_value("")
    expect(dialog.locator("input[name=element_models]")).to_have_count(6)
    expect(dialog.get_by_role("checkbox", name="Keep Knit's schedule")).to_be_checked()
    expect(dialog.get_by_text("as configured ($KNIT_SCHEDULING, else airflow)")).to_be_visible()
    expect(dialog.get_by_role("button", name="Knit's sync settings")).to_be_visible()
    trigger = dialog.get_by_role("button", name="Trigger", exact=True)
    expect(trigger).to_be_enabled()
    screenshot(dialog, "trigger-form.png")
    trigger.click()
    run_id = _submitted_run_id(page, ui, MAIN)
    assert ui.cluster.wait_for_run(MAIN, run_id, timeout=300) == "success"
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in ui.cluster.task_instances(MAIN, run_id)}
    assert states[("sync.start_sync", 0)] == "success", states
    assert states[("sync.reconcile", 0)] == "success", states
    (knit_run, *_) = ui.stack.sim.runs(integration_id=INTEGRATION)
    assert knit_run["syncType"] == "initial_sync"


def test_jobs_trigger_form_submits_with_its_defaults_and_syncs_the_default_job_models(page: Any, ui: UiStack) -> None:
    """The second data type's form, built by the same factory from its own spec, submits as it opens."""
    jobs = get("ats_jobs")
    ui.cluster.wait_for_dag(jobs.dag_id)
    dialog = _open_trigger_dialog(page, ui, jobs.dag_id)
    trigger = dialog.get_by_role("button", name="Trigger", exact=True)
    expect(trigger).to_be_enabled()
    trigger.click()
    run_id = _submitted_run_id(page, ui, jobs.dag_id)
    assert ui.cluster.wait_for_run(jobs.dag_id, run_id, timeout=300) == "success"
    calls = [call for call in ui.stack.sim.starts(INTEGRATION) if call["dataType"] == jobs.name]
    assert calls, "the form's run called sync.start for ats_jobs"
    (knit_run, *_) = [r for r in ui.stack.sim.runs(integration_id=INTEGRATION) if r["dataType"] == jobs.name]
    assert knit_run["syncType"] == "initial_sync"
    assert sorted(ui.stack.sim.job(knit_run["syncJobId"])["models"]) == sorted(jobs.default_models)


def test_a_bad_param_is_shown_in_the_form_and_creates_no_run(page: Any, ui: UiStack) -> None:
    before = len(_runs(ui, MAIN))
    dialog = _open_trigger_dialog(page, ui, MAIN)
    dialog.get_by_role("button", name="Delivery").click()
    dialog.locator("input[name=element_destination]").fill("ftp://example.com/hook")
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    expect(dialog.get_by_text("Invalid input for param destination")).to_be_visible()
    assert len(_runs(ui, MAIN)) == before, "a rejected form must not create a run"


def test_on_delivery_trigger_form_submits_with_its_defaults_and_the_run_succeeds(page: Any, ui: UiStack) -> None:
    dialog = _open_trigger_dialog(page, ui, ON_DELIVERY)
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    run_id = _submitted_run_id(page, ui, ON_DELIVERY)
    assert ui.cluster.wait_for_run(ON_DELIVERY, run_id, timeout=300) == "success"


def test_backfill_from_the_dialog_runs_with_the_default_params(page: Any, ui: UiStack) -> None:
    dialog = _open_trigger_dialog(page, ui, MAIN)
    dialog.get_by_text("Backfill", exact=True).click()
    day = (datetime.now(timezone.utc) - timedelta(days=3)).strftime("%Y/%m/%d")
    for picker in range(2):  # From, To: the same day
        page.get_by_test_id("datetime-input").nth(picker).click()
        page.locator("input[placeholder='YYYY/MM/DD']:visible").fill(day)
        page.locator("input[placeholder='HH:mm']:visible").fill("00:00")
        page.keyboard.press("Escape")
        # The next picker's popover has the same inputs: wait until this one has closed.
        expect(page.locator("input[placeholder='YYYY/MM/DD']:visible")).to_have_count(0)
    run_backfill = page.get_by_role("button", name="Run Backfill")
    expect(run_backfill).to_be_enabled()
    run_backfill.click()
    knit_runs_before = len(ui.stack.sim.runs())

    def backfill_runs() -> list[dict[str, Any]]:
        return [r for r in _runs(ui, MAIN) if r["run_type"] == "backfill"]

    wait_until(lambda: bool(backfill_runs()), 60, "the backfill's run", interval=0.5)
    (run,) = backfill_runs()
    assert ui.cluster.wait_for_run(MAIN, run["dag_run_id"], timeout=300) == "success"
    assert len(ui.stack.sim.runs()) == knit_runs_before, "a backfill normalizes again; it starts no sync"


def test_knit_connection_form_shows_its_fields_and_saves(page: Any, ui: UiStack) -> None:
    page.goto(f"{ui.url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog").first
    dialog.locator("input[name=connection_id]").fill("knit_from_the_form")
    dialog.get_by_role("combobox").fill("Knit")
    page.get_by_role("option", name="Knit", exact=True).click()
    # The knit form: relabelled standard fields, hidden ones, and the extras as their own fields.
    expect(dialog.get_by_text("Knit API URL")).to_be_visible()
    expect(dialog.get_by_text("API key", exact=True)).to_be_visible()
    expect(dialog.locator("input[name=login]")).to_have_count(0)
    dialog.locator("input[name=host]").fill("https://knit.example.test")
    dialog.locator("input[name=password]").fill("key-from-the-form")
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for name in ("integration_id", "webhook_secret", "timeout", "max_attempts", "max_retry_seconds", "dashboard_url"):
        expect(dialog.locator(f"[name=element_{name}]")).to_have_count(1)
    dialog.locator("[name=element_integration_id]").fill("int-from-the-form")
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_text("knit_from_the_form")).to_be_visible()
    saved = ui.cluster.api("GET", "/connections/knit_from_the_form")
    assert (saved["conn_type"], saved["host"]) == ("knit", "https://knit.example.test")
    assert '"integration_id": "int-from-the-form"' in saved["extra"]


def _latest_main_run(ui: UiStack) -> str:
    """The newest successful manual run of the main DAG: the trigger-form test's, else one made here."""
    runs = [r for r in _runs(ui, MAIN) if r["run_type"] == "manual" and r["state"] == "success"]
    if runs:
        return str(runs[-1]["dag_run_id"])
    ui.cluster.unpause(MAIN)  # when run alone (-k): the story so far has not triggered one
    run_id = ui.cluster.trigger(MAIN)
    assert ui.cluster.wait_for_run(MAIN, run_id, timeout=300) == "success"
    return run_id


def test_start_sync_task_page_shows_the_knit_link(page: Any, ui: UiStack) -> None:
    run_id = _latest_main_run(ui)
    page.goto(f"{ui.url}/dags/{MAIN}/runs/{quote(run_id, safe='')}/tasks/sync.start_sync/mapped/0/details")
    link = page.get_by_role("link", name="Knit dashboard")
    expect(link).to_be_visible()
    started = ui.cluster.api(
        "GET",
        f"/dags/{MAIN}/dagRuns/{quote(run_id, safe='')}/taskInstances/sync.start_sync/xcomEntries/return_value"
        "?map_index=0",
    )["value"]
    expect(link).to_have_attribute("href", SYNC_JOB_URL.format(sync_job_id=started["sync_job_id"]))


def _status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_syncs_page_is_refused_without_a_login(ui: UiStack) -> None:
    page_url = f"{ui.url}/knit-syncs/"
    assert _status(page_url) == 401
    assert _status(page_url, token="not-a-token") == 403
    assert _status(page_url, token=ui.cluster.token) == 200


def land_a_running_sync(database_url: str, integration_id: str) -> str:
    """A run still delivering: record events in three batches and a processed that is not final.

    The batches land within milliseconds; their arrival times are then spread over ten minutes,
    so the chart has a shape to draw.
    """
    job, run = ids("running")
    lander = Lander(database_url, integration_id=integration_id)
    try:
        for _ in range(3):
            lander.records(job, run, 25)
        knit_started = int((datetime.now(timezone.utc) - timedelta(minutes=11)).timestamp() * 1000)
        lander.land(
            [
                lander.event(
                    "sync.events.processed",
                    job,
                    run,
                    {
                        "status": "SUCCESS",
                        "processed": "300",
                        "emitted": "300",
                        "startedAt": str(knit_started),
                        "complete": False,
                    },
                )
            ]
        )
        lander.execute(
            "UPDATE knit_landing.events SET received_at = now() - interval '10 minutes'"
            " + (seq - (SELECT min(seq) FROM knit_landing.events WHERE sync_run_id = %s)) * interval '7 seconds'"
            " WHERE sync_run_id = %s",
            (run, run),
        )
        lander.execute(
            "UPDATE knit_landing.sync_runs SET first_received_at = e.lo, last_received_at = e.hi"
            " FROM (SELECT min(received_at) AS lo, max(received_at) AS hi FROM knit_landing.events"
            "       WHERE sync_run_id = %s) AS e WHERE sync_run_id = %s",
            (run, run),
        )
    finally:
        lander.close()
    return run


def test_syncs_page_renders_in_airflows_navigation(page: Any, ui: UiStack) -> None:
    run_id = _latest_main_run(ui)
    running = land_a_running_sync(ui.stack.database_url, "int-globex")
    page.set_viewport_size({"width": 1720, "height": 900})  # every column in view, for its picture
    landed = [r["syncRunId"] for r in ui.stack.sim.runs(integration_id=INTEGRATION)]
    page.goto(f"{ui.url}/dags")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Knit syncs").click()
    frame = page.frame_locator("iframe").first
    expect(frame.get_by_role("heading", name="Knit syncs")).to_be_visible()
    expect(frame.get_by_role("heading", name=f"Integration {INTEGRATION}")).to_be_visible()
    # The registry lists the integration, known from its syncs (nothing activated it in this stack).
    expect(frame.get_by_role("heading", name="Integrations", exact=True)).to_be_visible()
    registered = frame.get_by_role("row").filter(has=frame.get_by_text(INTEGRATION, exact=True))
    expect(registered.get_by_text("seen_only_through_syncs", exact=True)).to_be_visible()
    for sync_run_id in landed:
        expect(frame.get_by_text(sync_run_id, exact=True)).to_be_visible()
    # The run started by the form's DAG run links back to it.
    expect(frame.get_by_role("link", name=f"{MAIN} / {run_id}")).to_be_visible()
    # The run still delivering: its state, Knit's counts so far, 75 of 300 landed, and a chart.
    expect(frame.get_by_role("heading", name="Integration int-globex")).to_be_visible()
    row = frame.get_by_role("row").filter(has_text=running)
    expect(row.get_by_text("running", exact=True)).to_be_visible()
    expect(row.get_by_text("225 missing")).to_be_visible()
    expect(frame.get_by_role("img", name=re.compile(f"75 events landed for {running}"))).to_be_visible()
    screenshot(page, "syncs-page.png")
    # The rows the form's run inserted, as its asset event counted them; opened, one line per table.
    normalized = frame.get_by_role("row").filter(has=frame.get_by_role("link", name=f"{MAIN} / {run_id}"))
    changes = normalized.get_by_text(re.compile(r"^rows \+\d"))
    expect(changes).to_be_visible()
    changes.click()
    expect(normalized.locator("code", has_text=re.compile("^ats_applications$"))).to_be_visible()
    # The data type filter reloads the frame with one type's runs (here, no ats_jobs run: not the
    # applications run still delivering), and "all" brings every type back.
    frame.get_by_role("link", name="ATS jobs (ats_jobs)").click()
    expect(frame.get_by_text("Recent runs of data type ats_jobs per integration")).to_be_visible()
    expect(frame.get_by_role("heading", name="Integration int-globex")).to_have_count(0)
    frame.get_by_role("link", name="all", exact=True).click()
    expect(
        frame.get_by_role("row").filter(has_text=running).get_by_role("link", name="ats_applications")
    ).to_be_visible()
    # A DAG run link leaves the frame for Airflow's own page of that run.
    frame.get_by_role("link", name=f"{MAIN} / {run_id}").click()
    page.wait_for_url(lambda url: unquote(url) == f"{ui.url}/dags/{MAIN}/runs/{run_id}")
    expect(page.get_by_role("link", name=run_id).first).to_be_visible()
