"""knit_provider.lineage: the names it gives, and nothing at all when the OpenLineage provider is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest

from knit_provider.lineage import knit_namespace, table_datasets
from knit_provider.settings import DEFAULT_KNIT_HOST, Schemas

# Runs in a fresh interpreter. With BLOCK set, the OpenLineage packages are made to look uninstalled
# before anything else is imported: their modules cannot be imported (None in sys.modules raises
# ModuleNotFoundError, as for a missing package) and their distributions are gone from the package
# metadata (so Airflow finds no provider entry point, as after ``pip uninstall``). The environment
# configures a transport, so only their absence can turn lineage off. No connection is defined:
# touching one would raise.
_SCRIPT = """
import json, os, sys

if os.environ["BLOCK"] == "1":
    import importlib.metadata
    import importlib_metadata

    hidden = {"apache-airflow-providers-openlineage", "openlineage-python", "openlineage-integration-common",
              "openlineage-sql"}
    for metadata in (importlib.metadata, importlib_metadata):
        def installed(every=metadata.distributions, **kwargs):
            return (d for d in every(**kwargs) if d.metadata["Name"].lower().replace("_", "-") not in hidden)
        metadata.distributions = installed
    for name in ("airflow.providers.openlineage", "openlineage", "openlineage_sql"):
        sys.modules[name] = None

from knit_provider import lineage
from knit_provider.operators.normalize import KnitNormalizeRunsOperator
from knit_provider.operators.start_sync import StartSyncOperator
from knit_provider.settings import Schemas

enabled = lineage.openlineage_enabled()
results = {}
if not enabled:
    normalize = KnitNormalizeRunsOperator(task_id="normalize", run_ids=["sr-1"])
    normalize.summary = {"runs": [], "reconciliations": [], "normalized": 0}
    results = {
        "start_sync": StartSyncOperator(task_id="start", destination="https://hooks.example/knit")
        .get_openlineage_facets_on_complete(None),
        "normalize": normalize.get_openlineage_facets_on_complete(None),
        "reconcile": lineage.report_reconcile_lineage(),
        "maintenance": lineage.report_maintenance_lineage("knit_landing_default", Schemas(), dry_run=False),
    }
from airflow.providers_manager import ProvidersManager

print(json.dumps({
    "provider_listed": "apache-airflow-providers-openlineage" in ProvidersManager().providers,
    "enabled": enabled,
    "results": results,
}))
"""


def _run(block: bool) -> dict[str, Any]:
    env = {**os.environ, "BLOCK": "1" if block else "0", "OPENLINEAGE__TRANSPORT__TYPE": "console"}
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_CONN_")}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_the_openlineage_provider_the_lineage_methods_return_nothing_and_raise_nothing() -> None:
    absent = _run(block=True)
    assert absent["provider_listed"] is False, "the simulated uninstall must hide the provider from Airflow too"
    assert absent["enabled"] is False
    assert absent["results"] == {"start_sync": None, "normalize": None, "reconcile": None, "maintenance": None}
    # The same interpreter and environment with the provider importable: lineage is on, so the block
    # above, and nothing else, is what turned it off.
    present = _run(block=False)
    assert (present["provider_listed"], present["enabled"]) == (True, True)


def test_knit_namespace_is_the_api_host_and_port() -> None:
    assert knit_namespace(DEFAULT_KNIT_HOST) == "knit://api.getknit.dev"
    assert knit_namespace("http://127.0.0.1:8765/") == "knit://127.0.0.1:8765"


def test_tables_are_named_as_postgres_lineage_names_them_with_their_columns(
    landing_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KNIT_LANDING_LINEAGE", landing_url)
    schemas = Schemas()

    events, missing = table_datasets("knit_landing_lineage", schemas, [("knit_landing", "events"), ("knit", "none")])

    url = urlsplit(landing_url)
    assert events.namespace == missing.namespace == f"postgres://{url.hostname}:{url.port}"
    assert events.name == f"{url.path.lstrip('/')}.knit_landing.events"
    fields = [(f.name, f.type) for f in events.facets["schema"].fields]
    assert fields[:3] == [("seq", "int8"), ("event_id", "text"), ("event_type", "text")]
    assert ("payload", "jsonb") in fields
    # A table that does not exist yet is still named, without a schema it cannot know.
    assert missing.name == f"{url.path.lstrip('/')}.knit.none"
    assert missing.facets == {}
