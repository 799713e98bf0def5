"""OpenLineage datasets of the Knit pipeline: what each task reads and writes, named once.

Names (the README's "Lineage" section documents them for users):

* **Knit**, one dataset per integration and data type: namespace ``knit://<host[:port]>`` of the
  ``knit`` connection's API URL, name ``<integration_id>.<data_type>``, e.g.
  ``knit://api.getknit.dev`` / ``int_123.ats_applications``.
* **Postgres tables** (the landing store and the normalized tables), as Airflow's Postgres
  integration names them, so they join the lineage other Postgres tasks report: namespace
  ``postgres://<host>:<port>`` of the landing connection, name ``<database>.<schema>.<table>``,
  with a schema facet (the columns in order, Postgres' type names) read from
  ``information_schema``.

The OpenLineage provider is optional. Every public function here imports it inside and returns
``None`` (or does nothing) when it is missing or disabled, so the operators and DAGs import and run
the same without it.

How each task reports:

* Operators (``StartSyncOperator``, ``KnitNormalizeRunsOperator``) implement
  ``get_openlineage_facets_on_complete``, which the provider calls after a successful run.
* TaskFlow tasks (reconcile, landing maintenance) cannot define that method. They add their
  datasets to the running task's ``inlets``/``outlets``, which the provider reads, as they are and
  with their facets, for a task without an extractor. Static ``inlets=`` cannot be used: the names
  depend on the connection (no look-ups at parse time) and, for reconcile, on the mapped
  integration. Airflow's hook-level collector (``get_hook_lineage_collector``) was not chosen: it
  keeps Airflow assets, not OpenLineage datasets, so the schema facet is lost and a ``knit://``
  URI (no registered converter) is dropped; and it is one collector per process, which
  ``airflow dags test`` never clears, so one task's datasets would show in every later task's events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from knit_provider.settings import DEFAULT_LANDING_CONN_ID, Schemas

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    from knit_provider.data_types import DataTypeSpec

KNIT_SCHEME = "knit"
EVENTS = "events"
SYNC_RUNS = "sync_runs"
EVENT_IDS = "event_ids"
#: The ledger every data type's normalization writes beside its own tables.
LEDGER = "normalized_runs"


def openlineage_enabled() -> bool:
    """True when the OpenLineage provider is installed and configured to emit (it has a transport)."""
    try:
        from airflow.providers.openlineage import conf
    except ImportError:
        return False
    return not conf.is_disabled()


def knit_namespace(base_url: str) -> str:
    """``knit://<host[:port]>`` of Knit's API URL: one namespace per Knit endpoint, as a database's host."""
    return f"{KNIT_SCHEME}://{urlsplit(base_url).netloc}"


def knit_dataset(knit_conn_id: str, integration_id: str | None, data_type: str) -> Dataset:
    """The Knit dataset of one integration and data type; ``None`` integration: the connection's default."""
    from openlineage.client.event_v2 import Dataset

    from knit_provider.hooks.knit import KnitHook

    knit = KnitHook(knit_conn_id).knit
    integration = (integration_id or "").strip() or knit.integration_id
    return Dataset(namespace=knit_namespace(knit.base_url), name=f"{integration}.{data_type}")


def table_datasets(landing_conn_id: str, schemas: Schemas, tables: Sequence[tuple[str, str]]) -> list[Dataset]:
    """Datasets of Postgres tables ``(schema, table)``, with the schema facet of those that exist.

    One connection and two small queries; a table not created yet (the target schema before the first
    normalization) is named without a schema facet.
    """
    from airflow.providers.openlineage.utils.sql import parse_query_result
    from openlineage.client.event_v2 import Dataset

    from knit_provider.hooks.landing import KnitLandingHook
    from knit_provider.sql import load_sql

    hook = KnitLandingHook(landing_conn_id, application_name="knit-lineage")
    info = hook.get_openlineage_database_info(hook.connection)
    namespace = f"{info.scheme}://{info.authority}"
    with closing(hook.get_conn()) as conn, conn.cursor() as cur:
        # The database actually connected to, whether or not the connection names one.
        cur.execute("SELECT current_database()")
        (database,) = cur.fetchone()
        cur.execute(
            load_sql("lineage/table_columns.sql", schemas),
            {"schemas": [schema for schema, _ in tables], "tables": [table for _, table in tables]},
        )
        found = {(table.schema, table.table): table for table in parse_query_result(cur)}
    return [
        found[key].to_dataset(namespace, database)
        if key in found
        else Dataset(namespace, f"{database}.{key[0]}.{key[1]}")
        for key in tables
    ]


def start_sync_lineage(
    *, knit_conn_id: str, integration_id: str | None, data_type: str, landing_conn_id: str
) -> OperatorLineage | None:
    """A sync start: Knit's dataset of the integration in, the landing events table (Knit delivers there) out."""
    if not openlineage_enabled():
        return None
    from airflow.providers.common.compat.sdk import AirflowNotFoundException
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs = [knit_dataset(knit_conn_id, integration_id, data_type)]
    schemas = Schemas.from_env()
    try:
        outputs = table_datasets(landing_conn_id, schemas, [(schemas.landing, EVENTS)])
    except AirflowNotFoundException:
        # The operator runs without the landing connection (worker clock fallback): no table to name.
        outputs = []
    return OperatorLineage(inputs=inputs, outputs=outputs)


def normalize_lineage(
    *, landing_conn_id: str, schemas: Schemas, spec: DataTypeSpec, summary: Mapping[str, Any]
) -> OperatorLineage | None:
    """Normalization: the landing events and runs in, the data type's tables and the ledger out, with counts.

    ``summary`` is the operator's result: its counts become the events' input statistics (record events
    read) and the output statistics of the record table and of the tables its steps counted (rows changed).
    """
    if not openlineage_enabled():
        return None
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    landing = [(schemas.landing, EVENTS), (schemas.landing, SYNC_RUNS)]
    target = [(schemas.target, table) for table in (*spec.tables, LEDGER)]
    datasets = table_datasets(landing_conn_id, schemas, landing + target)
    runs = [run for run in summary["runs"] if not run["skipped"]]
    read = {EVENTS: sum(run["record_events"] for run in runs)}
    written = {spec.record_table: sum(run["records_changed"] for run in runs)}
    for run in runs:
        for table, count in run["changes"].items():
            written[table] = written.get(table, 0) + count
    inputs = [
        InputDataset(d.namespace, d.name, facets=d.facets, inputFacets=_input_statistics(read.get(table)))
        for (_, table), d in zip(landing, datasets[: len(landing)], strict=True)
    ]
    outputs = [
        OutputDataset(d.namespace, d.name, facets=d.facets, outputFacets=_output_statistics(written.get(table)))
        for (_, table), d in zip(target, datasets[len(landing) :], strict=True)
    ]
    return OperatorLineage(inputs=inputs, outputs=outputs)


def _input_statistics(rows: int | None) -> dict[str, Any]:
    from openlineage.client.facet_v2 import input_statistics_input_dataset

    if rows is None:
        return {}
    return {"inputStatistics": input_statistics_input_dataset.InputStatisticsInputDatasetFacet(rowCount=rows)}


def _output_statistics(rows: int | None) -> dict[str, Any]:
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    if rows is None:
        return {}
    return {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)}


def report_reconcile_lineage(landing_conn_id: str = DEFAULT_LANDING_CONN_ID, schemas: Schemas | None = None) -> None:
    """From a reconcile TaskFlow task: it reads the landing events and runs, and writes nothing."""
    if not openlineage_enabled():
        return
    schemas = schemas or Schemas.from_env()
    inputs = table_datasets(landing_conn_id, schemas, [(schemas.landing, EVENTS), (schemas.landing, SYNC_RUNS)])
    _add_to_running_task(inputs, [])


def report_maintenance_lineage(conn_id: str, schemas: Schemas, *, dry_run: bool) -> None:
    """From the maintenance TaskFlow task: runs decide, events and remembered ids are removed.

    A dry run only reads, so every table is an input. ``sync_runs`` is an input either way: the only
    thing written there is the mark that a run's events were pruned.
    """
    if not openlineage_enabled():
        return
    landing = [(schemas.landing, SYNC_RUNS), (schemas.landing, EVENTS), (schemas.landing, EVENT_IDS)]
    datasets = table_datasets(conn_id, schemas, landing)
    if dry_run:
        _add_to_running_task(datasets, [])
    else:
        _add_to_running_task(datasets[:1], datasets[1:])


def _add_to_running_task(inputs: Sequence[Dataset], outputs: Sequence[Dataset]) -> None:
    """Add datasets to the running task's inlets/outlets, once each (a retry in the same process adds none)."""
    from airflow.sdk import get_current_context
    from openlineage.client.event_v2 import Dataset

    task = get_current_context()["task"]
    for lineage, datasets in ((task.inlets, inputs), (task.outlets, outputs)):
        known = {(item.namespace, item.name) for item in lineage if isinstance(item, Dataset)}
        lineage.extend(dataset for dataset in datasets if (dataset.namespace, dataset.name) not in known)
