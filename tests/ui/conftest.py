"""One Airflow stack and one Chromium per test module: the browser tests share them to stay within minutes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from knit_ui_stack import UiStack, check_chromium, chromium, ui_stack


@pytest.fixture(scope="module")
def ui(pg_url: str, pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiStack]:
    """The simulator, the receiver and Airflow (API server, scheduler, DAG processor, triggerer) on Postgres."""
    check_chromium()  # before a minute of start-up, not after
    metadata_url = pg_server.create_database("ui_airflow_metadata")
    with ui_stack(pg_url, metadata_url, tmp_path_factory.mktemp("airflow-ui")) as running:
        yield running


@pytest.fixture(scope="module")
def browser_context(ui: UiStack) -> Iterator[Any]:
    """A headless Chromium profile shared by the module's tests; each test opens its own page."""
    with chromium() as context:
        context.set_default_timeout(30_000)
        yield context


@pytest.fixture
def page(browser_context: Any, ui: UiStack) -> Iterator[Any]:
    """A page logged in as the admin user (the session cookie the login form would set)."""
    browser_context.add_cookies([ui.cookie()])
    opened = browser_context.new_page()
    try:
        yield opened
    finally:
        opened.close()
