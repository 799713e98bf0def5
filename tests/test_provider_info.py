"""The provider info: valid for the installed Airflow, importable, and seen by Airflow's ProvidersManager."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest

from knit_provider.provider_info import get_provider_info

AIRFLOW_DIR = Path(airflow.__file__).parent


def _schema(name: str) -> dict[str, Any]:
    matches = sorted(AIRFLOW_DIR.rglob(name))
    assert matches, f"{name} not found in the installed apache-airflow package ({AIRFLOW_DIR})"
    return json.loads(matches[0].read_text())


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_provider_info_validates_against_airflows_schema():
    schema = _schema("provider_info.schema.json")
    jsonschema.validators.validator_for(schema)(schema).validate(get_provider_info())


def test_connection_form_behaviour_validates_against_airflows_schema():
    schema = _schema("customized_form_field_behaviours.schema.json")
    (knit,) = get_provider_info()["connection-types"]
    behaviour = knit["ui-field-behaviour"]
    jsonschema.validate(
        {
            "hidden_fields": behaviour["hidden-fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        },
        schema,
    )


def test_everything_listed_imports():
    info = get_provider_info()
    modules = [
        m
        for key in ("hooks", "operators", "sensors", "triggers")
        for entry in info.get(key, [])
        for m in entry["python-modules"]
    ]
    assert {"knit_provider.hooks.knit", "knit_provider.hooks.landing"} <= set(modules)
    for module in modules:
        importlib.import_module(module)
    from knit_provider.hooks.knit import KnitHook
    from knit_provider.operators.links import KnitDashboardLink

    (knit,) = info["connection-types"]
    assert _import(knit["hook-class-name"]) is KnitHook
    assert knit["connection-type"] == KnitHook.conn_type == "knit"
    assert knit["hook-name"] == KnitHook.hook_name == "Knit"
    assert [_import(link) for link in info["extra-links"]] == [KnitDashboardLink]
    integrations = {i["integration-name"] for i in info["integrations"]}
    for key in ("hooks", "operators", "sensors", "triggers"):
        assert {entry["integration-name"] for entry in info[key]} <= integrations


def test_hook_method_and_provider_info_declare_the_same_form():
    from knit_provider.hooks.knit import KnitHook

    (knit,) = get_provider_info()["connection-types"]
    declared = knit["ui-field-behaviour"]
    assert KnitHook.get_ui_field_behaviour() == {
        "hidden_fields": declared["hidden-fields"],
        "relabeling": declared["relabeling"],
        "placeholders": declared["placeholders"],
    }
    assert set(knit["conn-fields"]) >= {"integration_id", "webhook_secret"}
    assert knit["conn-fields"]["webhook_secret"]["schema"]["format"] == "password"


def test_the_entry_point_is_installed():
    (entry,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("knit_provider")]
    assert entry.load() is get_provider_info
    plugins = [e for e in entry_points(group="airflow.plugins") if e.value.startswith("knit_provider")]
    assert plugins, "the airflow.plugins entry point is missing: reinstall with pip install -e ."


@pytest.fixture(scope="module")
def providers_manager() -> Any:
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_airflow_registers_the_knit_connection_type():
    from airflow_internals import ProvidersManagerTaskRuntime

    runtime = ProvidersManagerTaskRuntime()
    assert "knit-airflow" in runtime.providers
    hook = runtime.hooks["knit"]
    assert hook is not None
    assert (hook.hook_class_name, hook.connection_id_attribute_name, hook.hook_name) == (
        "knit_provider.hooks.knit.KnitHook",
        "knit_conn_id",
        "Knit",
    )


def test_airflow_builds_the_knit_connection_form(providers_manager):
    behaviour = providers_manager.field_behaviours["knit"]
    assert set(behaviour["hidden_fields"]) == {"login", "schema", "port"}
    assert behaviour["relabeling"]["password"] == "API key"
    widgets = providers_manager.connection_form_widgets
    assert widgets["extra__knit__integration_id"].field["schema"]["title"] == "Integration ID"
    assert widgets["extra__knit__webhook_secret"].is_sensitive
    assert not widgets["extra__knit__integration_id"].is_sensitive
