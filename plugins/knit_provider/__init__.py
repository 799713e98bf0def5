"""Knit for Apache Airflow: start syncs, land Knit's pushed events, wait for runs, normalize them.

Public names are imported lazily so that importing the package (as the plugin and the webhook
receiver do) does not pull in every role's dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "KnitHook": "knit_provider.hooks.knit",
    "SyncStarted": "knit_provider.hooks.knit",
    "StartSyncOperator": "knit_provider.operators.start_sync",
    "KnitNormalizeRunsOperator": "knit_provider.operators.normalize",
    "KnitAllConsumedSensor": "knit_provider.sensors.all_consumed",
    "AllConsumedTrigger": "knit_provider.triggers.all_consumed",
    "CompletedRunsTrigger": "knit_provider.triggers.completed_runs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
