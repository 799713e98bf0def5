"""Normalization: turn the landed events of completed runs into clean ATS application tables.

Everything set-based runs inside Postgres (the SQL lives in ``sql/normalize/``); Python only picks
the runs, opens one transaction per run and reports what happened.
"""

from __future__ import annotations

from knit_provider.normalize.apply import NormalizeResult, normalize_run, normalize_runs
from knit_provider.normalize.reconcile import Reconciliation, ReconciliationError, reconcile_run
from knit_provider.normalize.runs import (
    RunNotCompleteError,
    RunNotFoundError,
    pending_runs,
    runs_completed_between,
)
from knit_provider.normalize.schema import ensure_schema

__all__ = [
    "NormalizeResult",
    "Reconciliation",
    "ReconciliationError",
    "RunNotCompleteError",
    "RunNotFoundError",
    "ensure_schema",
    "normalize_run",
    "normalize_runs",
    "pending_runs",
    "reconcile_run",
    "runs_completed_between",
]
