"""A third Knit data type defined only here: offices, one table, to prove the data-type seam holds.

Nothing outside this folder knows it: the test registers it (``knit_provider.data_types.register``), or
names this module in ``KNIT_DATA_TYPE_MODULES`` for a process of its own, and the provider's runner,
ledger, snapshot step, reconciliation, DAG factory and assets do the rest.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from knit_provider.data_types import DataTypeSpec, Model, Step


def _offices_written(cur: Any, rowcounts: list[int]) -> dict[str, int]:
    # The upsert is the file's last statement; it writes only the offices whose version won.
    return {"records_changed": rowcounts[-1]}


SPEC = DataTypeSpec(
    name="ats_offices",
    title="ATS offices",
    record="office",
    records="offices",
    models=(Model("office_info", "info", "Office (name, location)"),),
    record_table="ats_offices",
    record_key="office_id",
    tables=("ats_offices",),
    sql=resources.files(__package__).joinpath("sql"),
    steps=(Step("offices.sql", _offices_written),),
)
