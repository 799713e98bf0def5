"""Every file in dags/ imports cleanly, does no work at parse time, and follows the project's policies."""

from __future__ import annotations

import copy
import itertools
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from knit_landing_helpers import ATS_APPLICATION_MODELS

from knit_provider.data_types import enabled
from knit_provider.run_plans import APPLICATIONS_ASSET, asset_for

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
MAIN = "knit_ats_applications"
ON_DELIVERY = "knit_ats_applications_on_delivery"
MAINTENANCE = "knit_landing_maintenance"
ONBOARDING = "knit_integration_onboarding"
EXAMPLE = "knit_example_hiring_funnel"


class ParseTimeWork(AssertionError):
    """A DAG file touched the network, a database or a connection while being parsed."""


@pytest.fixture(scope="module")
def dagbag() -> Any:
    """Parse dags/ the way the DAG processor does, with every way out of the process cut off."""
    from airflow.sdk import BaseHook
    from airflow_internals import DagBag

    def refuse(*args: object, **kwargs: object) -> None:
        raise ParseTimeWork(f"work at parse time: {args!r:.200}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setattr(BaseHook, "get_connection", classmethod(refuse))
        patch.setattr("psycopg2.connect", refuse)
        return DagBag(dag_folder=str(DAGS))


def test_every_file_imports_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}, "\n\n".join(f"{path}:\n{err}" for path, err in dagbag.import_errors.items())
    dag_files = {p.name for p in DAGS.glob("*.py") if not p.name.startswith("_")}
    loaded_files = {Path(dag.fileloc).name for dag in dagbag.dags.values()}
    assert dag_files == loaded_files, "every file in dags/ must define a DAG"
    per_type = {dag_id for spec in enabled() for dag_id in (spec.dag_id, spec.on_delivery_dag_id)}
    assert {MAIN, ON_DELIVERY} <= per_type
    assert set(dagbag.dag_ids) == per_type | {MAINTENANCE, ONBOARDING, EXAMPLE}


def test_policies_hold_for_every_dag(dagbag: Any) -> None:
    for dag in dagbag.dags.values():
        assert "knit" in (dag.tags or ()), dag.dag_id
        assert len(dag.doc_md or "") > 200, f"{dag.dag_id} needs docs shown in the UI"
        # Onboarding runs wait on different customers' initial syncs; its registry claim keeps them apart.
        # The asset-watched on-delivery DAG is never held at its cap, where Airflow can strand asset events.
        watched = dag.dag_id == ONBOARDING or dag.dag_id.endswith("_on_delivery")
        assert dag.max_active_runs == (8 if watched else 1), dag.dag_id
        assert dag.catchup is False, dag.dag_id
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            assert task.owner != "airflow", f"{where}: set an owner"
            if task.task_type == "KnitAllConsumedSensor":
                assert 0 < (task.timeout or 0) <= 24 * 3600, f"{where}: the wait needs a timeout"
                assert task.deferrable, f"{where}: the wait must defer to the triggerer"
            else:
                assert task.execution_timeout is not None, f"{where}: needs an execution_timeout"
            if task.task_id not in ("start_sync", "sync.start_sync"):
                assert task.retries >= 1, f"{where}: needs retries"
                assert task.retry_exponential_backoff, f"{where}: retries need exponential backoff"
                assert task.max_retry_delay is not None, f"{where}: cap the backoff"


def test_every_trigger_form_submits_as_it_opens(dagbag: Any) -> None:
    """Airflow's form requires a typed field unless its type allows null, and a required empty field
    disables the Trigger button: an empty default must be nullable, and the defaults must validate."""
    for dag in dagbag.dags.values():
        copy.deepcopy(dag.params).validate()
        for name in dag.params:
            param = dag.params.get_param(name)
            where = f"{dag.dag_id} param {name}"
            assert param.description, f"{where}: the form shows the description as help"
            types = param.schema.get("type", [])
            if param.value in (None, "", [], {}) and types:
                assert "null" in types, f"{where}: empty by default, so its type must allow null"


def test_dags_serialize_as_the_scheduler_needs(dagbag: Any) -> None:
    from airflow_internals import DagSerialization

    for dag in dagbag.dags.values():
        data = DagSerialization.to_dict(dag)
        assert DagSerialization.from_dict(data).dag_id == dag.dag_id


def test_main_dag_shape(dagbag: Any) -> None:
    dag = dagbag.dags[MAIN]
    group = dag.task_group_dict["sync"]
    assert group.__class__.__name__ == "MappedTaskGroup", "one mapped group per integration"
    chain = ["sync.start_sync", "sync.wait_for_all_consumed", "sync.normalize", "sync.reconcile"]
    for upstream, downstream in itertools.pairwise(chain):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    assert dag.get_task("sync.start_sync").upstream_task_ids == {"plan"}
    publish = dag.get_task("publish")
    assert publish.outlets == [APPLICATIONS_ASSET]
    assert APPLICATIONS_ASSET.uri.rstrip("/") == "knit://ats_applications"
    assert publish.trigger_rule == "none_failed_min_one_success"
    # Knit schedules, Airflow normalizes: the completed runs nobody normalized yet, then publish.
    assert {"normalize_backfill_interval", "normalize_completed"} <= publish.upstream_task_ids
    assert dag.get_task("normalize_completed").pending is True
    assert dag.get_task("sync.start_sync").retries > 0, "a retried start never starts a second run"
    assert dag.get_task("sync.normalize").skip_normalized is True, "each run is normalized once"
    assert timedelta(0) < (dag.dagrun_timeout or timedelta(0)) <= timedelta(days=1)
    assert dag.timetable.can_be_scheduled, "backfills need a schedule with data intervals"


def test_main_dag_params_reject_bad_input(dagbag: Any) -> None:
    from airflow.providers.common.compat.sdk import ParamValidationError

    dag = dagbag.dags[MAIN]
    assert dag.params.validate()["models"] == list(dag.params["models"])

    def check(**conf: object) -> None:
        params = copy.deepcopy(dag.params)  # ParamsDict(dag.params) would share, and change, the DAG's Params
        params.update(conf)
        params.validate()

    check(
        integration_ids=["a", "b"],
        models=["application_info"],
        frequency="high",
        full_resync=True,
        destination="https://airflow.example.com/knit/webhook",
    )
    for bad in (
        {"integration_ids": "a"},
        {"integration_ids": [""]},
        {"integration_ids": [1]},
        {"models": ["application_salary"]},
        {"models": []},
        {"frequency": "hourly"},
        {"full_resync": "yes"},
        {"destination": "ftp://example.com"},
        {"destination": "not a url"},
    ):
        with pytest.raises(ParamValidationError, match="Invalid input for param"):
            check(**bad)


def test_main_dag_form_submits_as_it_opens(dagbag: Any) -> None:
    """Airflow's form requires every typed field whose type does not allow null, and sends an empty field as None."""
    dag = dagbag.dags[MAIN]
    schemas = {name: dag.params.get_param(name).schema for name in dag.params}
    optional = {name for name, schema in schemas.items() if "null" in schema.get("type", [])}
    # Knit's own settings are sent only when set; who schedules defaults to the deployment's setting.
    assert optional == {
        "integration_ids",
        "destination",
        "scheduling",
        "frequency",
        "include_inactive_records",
        "start_hour",
        "start_minute",
    }
    for name in optional:
        assert dag.params[name] is None, f"{name}: an optional field opens empty"
    # What the form submits untouched, and with the optional fields cleared again.
    params = copy.deepcopy(dag.params)
    params.update(dict.fromkeys(optional))
    assert params.validate()["models"] == list(ATS_APPLICATION_MODELS)
    models = schemas["models"]
    assert models["examples"] == list(ATS_APPLICATION_MODELS), "examples make the form a multi-select"
    assert set(models["values_display"]) == set(ATS_APPLICATION_MODELS)
    assert schemas["frequency"]["enum"] == [None, "standard", "medium", "high"]
    assert schemas["scheduling"]["enum"] == [None, "airflow", "knit"]
    assert dag.params["honor_scheduler"] is True, "Knit's schedule is left as the customer set it"
    assert all(dag.params.get_param(name).description for name in schemas)


def test_on_delivery_dag_is_watched_and_updates_the_same_asset(dagbag: Any) -> None:
    from knit_provider.triggers.completed_runs import CompletedRunsTrigger

    dag = dagbag.dags[ON_DELIVERY]
    condition = dag.timetable.asset_condition
    (asset,) = condition.objects
    assert [type(w.trigger) for w in asset.watchers] == [CompletedRunsTrigger]
    assert asset.uri != APPLICATIONS_ASSET.uri, "watching our own outlet would schedule itself forever"
    outlets = [outlet for task in dag.tasks for outlet in task.outlets]
    assert outlets == [APPLICATIONS_ASSET], "both DAGs update the same asset"


def test_onboarding_dag_is_watched_and_maps_the_main_dags_group(dagbag: Any) -> None:
    from knit_provider.triggers.activations import ActivationsTrigger

    dag = dagbag.dags[ONBOARDING]
    (asset,) = dag.timetable.asset_condition.objects
    assert [type(w.trigger) for w in asset.watchers] == [ActivationsTrigger]
    assert asset.uri == "knit://knit_landing/activations"
    main = dagbag.dags[MAIN]
    group_tasks = sorted(t for t in dag.task_ids if t.startswith("sync."))
    assert group_tasks == sorted(t for t in main.task_ids if t.startswith("sync.")), "the same group as the main DAG"
    assert dag.task_group_dict["sync"].__class__.__name__ == "MappedTaskGroup"
    assert dag.get_task("sync.start_sync").upstream_task_ids == {"plan"}
    assert dag.get_task("publish").outlets == [asset_for(spec) for spec in enabled()]
    assert APPLICATIONS_ASSET in dag.get_task("publish").outlets
    finish = dag.get_task("finish")
    assert finish.is_teardown, "claims are released whatever happened upstream, and failures still fail the run"
    assert {"sync.reconcile", "validation"} <= finish.upstream_task_ids
    # Each data type syncs its own default models, so the form has no models list (it would be one type's).
    assert set(dag.params) == {"frequency", "include_inactive_records"}


def test_the_example_dag_runs_on_the_applications_asset(dagbag: Any) -> None:
    """The downstream example users copy: scheduled on what every publish of applications updates."""
    dag = dagbag.dags[EXAMPLE]
    assert set(dag.tags) == {"knit", "example"}
    assert list(dag.timetable.asset_condition.objects) == [APPLICATIONS_ASSET]
    assert [task.task_id for task in dag.tasks] == ["refresh"]
