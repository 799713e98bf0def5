"""What a Knit data type is to the provider: its models, its tables and its normalization steps.

Everything above the landing store (model checks, DAG params, the normalize runner and its ledger,
the snapshot step, lineage, the syncs page, onboarding, the assets) reads a :class:`DataTypeSpec`.
A data type is one package under ``knit_provider/data_types/`` holding its spec and an ``sql/``
folder; ``registry.py`` lists the packages it knows.

The SQL of a data type (``sql/`` beside its spec) must provide:

* ``schema.sql``: its tables, idempotent (re-applied when its text changes). The record table
  (``record_table``, keyed by ``integration_id`` and ``record_key``) carries the bookkeeping columns
  the shared snapshot step reads: ``is_deleted``, ``deleted_at``, ``version_first_seq``,
  ``version_seq``, ``data_first_seq``, ``data_seq``, ``snapshot_run_id``, ``snapshot_first_seq``.
* ``run_events.sql``: reads the run's record events once into the temporary table ``_run_events`` (one
  row per record event, with at least ``integration_id``: the runner locks those integrations before any
  write), and any temporary tables of its own.
* ``run_counts.sql``: one row: record events, distinct records, events with unusable fields,
  events that name no record, and the model ids the run's new/modified events carried (sorted).
* the ``steps``, in order: they write the tables, comparing versions so that runs may be
  normalized in any order and again. They may read ``_later_snapshot`` (integration_id, sync_run_id,
  first_seq, snapshot_at): per integration, the earliest snapshot of the type applied after this run
  (``sql/normalize/later_snapshot.sql``), which deletes a record whose latest event is this run's.

Every file is filled like the provider's own (``{landing}``, ``{target}``) and gets the parameters
``run_id``, ``integration_id``, ``data_type``, ``first_seq``, ``started_at``, ``first_received_at``,
``last_received_at`` and ``may_hold_late_duplicates``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources.abc import Traversable
from typing import Any

from knit_provider.settings import Schemas

# What a step reports: (cursor after its last statement, row count of each of its statements) -> counts.
StepCounts = Callable[[Any, list[int]], dict[str, int]]


@dataclass(frozen=True)
class Model:
    """One of Knit's models of a data type: its id in ``sync.start``, its key in ``eventData``."""

    id: str
    key: str
    label: str
    # Asked for when the user chooses nothing (the trigger form's default, StartSyncOperator's).
    default: bool = True


@dataclass(frozen=True)
class Step:
    """One SQL file of a data type's normalization, and what it counts: ``records_changed`` (rows of the record
    table changed), or rows changed in another of its tables, by table name (the ledger's ``changes``)."""

    file: str
    counts: StepCounts | None = None


@dataclass(frozen=True)
class DataTypeSpec:
    """A Knit data type as the provider normalizes, schedules and shows it."""

    name: str  # Knit's dataType, e.g. "ats_jobs"
    title: str  # for people: "ATS jobs"
    record: str  # one record, for messages: "job"
    records: str  # several: "jobs"
    models: tuple[Model, ...]
    record_table: str  # one row per record: "ats_jobs"
    record_key: str  # its key beside integration_id: "job_id"
    # Every table and view normalization writes or keeps up, the record table first (lineage, docs).
    tables: tuple[str, ...]
    sql: Traversable = field(repr=False)  # the folder of its SQL files
    steps: tuple[Step, ...] = ()
    # Also report under the names of releases before data types, which their readers use: the ledger's
    # application columns and the result's and the normalize task's application keys (ats_applications only).
    earlier_names: bool = False

    @cached_property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.models)

    @cached_property
    def default_models(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.models if m.default)

    @property
    def dag_id(self) -> str:
        """The scheduled DAG of this type (``knit_ats_applications`` keeps the id it always had)."""
        return f"knit_{self.name}"

    @property
    def on_delivery_dag_id(self) -> str:
        return f"knit_{self.name}_on_delivery"

    @property
    def asset_uri(self) -> str:
        return f"knit://{self.name}"

    @property
    def asset_name(self) -> str:
        return f"knit_{self.name}"

    def unknown_models(self, models: list[str] | tuple[str, ...]) -> list[str]:
        return [m for m in models if m not in self.model_ids]

    def load_sql(self, name: str, schemas: Schemas) -> str:
        """One of this type's SQL files, with the schema names and its record table filled in."""
        from knit_provider.sql import fill, read_file

        return fill(read_file(self.sql, name), schemas, self)


def changed_records(cur: Any, rowcounts: list[int]) -> dict[str, int]:
    """The ``records_changed`` of a step that lists the records it changed in the temporary table ``_changed``."""
    cur.execute("SELECT count(*) FROM _changed")
    return {"records_changed": cur.fetchone()[0]}
