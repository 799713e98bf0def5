"""The data types the provider knows, and the ones this deployment syncs.

A built-in type is a package beside ``ats_applications`` named in ``_BUILT_IN`` (and in pyproject's
packages, so the wheel holds it). The types a deployment syncs are ``$KNIT_DATA_TYPES``
(comma-separated names), by default every built-in one and every one of ``$KNIT_DATA_TYPE_MODULES``:
each enabled type gets its scheduled and on-delivery DAG, and onboarding syncs it.
A type defined outside the provider is known too: registered by :func:`register`, or named in
``$KNIT_DATA_TYPE_MODULES`` (comma-separated importable modules, each with a ``SPEC``), which every
Airflow process and the CLI import alike.
"""

from __future__ import annotations

import importlib
import os

from knit_provider.data_types.spec import DataTypeSpec

# Packages under knit_provider.data_types, in the order the DAGs, the syncs page and onboarding list them.
_BUILT_IN: tuple[str, ...] = ("ats_applications", "ats_jobs")

_known: dict[str, DataTypeSpec] = {}
# The built-in types and those of $KNIT_DATA_TYPE_MODULES, in that order: what is synced by default.
_loaded: list[str] = []


class UnknownDataTypeError(ValueError):
    """A data type the provider has no spec for."""


def _load_built_in() -> None:
    if _known:
        return
    modules = [f"knit_provider.data_types.{name}" for name in _BUILT_IN]
    modules += [m.strip() for m in os.environ.get("KNIT_DATA_TYPE_MODULES", "").split(",") if m.strip()]
    found: dict[str, DataTypeSpec] = {}  # all or nothing: a module that fails is reported on every call
    for module in modules:
        try:
            spec = importlib.import_module(module).SPEC
        except (ImportError, AttributeError) as exc:
            raise UnknownDataTypeError(
                f"Cannot load the data type module {module!r} ($KNIT_DATA_TYPE_MODULES): {exc}. It must be "
                "importable by every Airflow process and define SPEC, a knit_provider.data_types.DataTypeSpec."
            ) from exc
        if not isinstance(spec, DataTypeSpec):
            raise UnknownDataTypeError(f"{module}.SPEC is a {type(spec).__name__}, not a DataTypeSpec.")
        found[spec.name] = spec
    _known.update(found)
    _loaded.extend(found)


def register(spec: DataTypeSpec) -> DataTypeSpec:
    """Make ``spec`` known (its runs normalize, its schema is created); registering it again replaces it."""
    _load_built_in()
    _known[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget a type registered with :func:`register` (tests that define their own)."""
    if name in _BUILT_IN:
        raise ValueError(f"{name!r} is built in and cannot be unregistered")
    _known.pop(name, None)


def known() -> tuple[DataTypeSpec, ...]:
    """Every data type the provider can normalize: the built-in ones, then the registered ones."""
    _load_built_in()
    return tuple(_known.values())


def get(name: str | None) -> DataTypeSpec:
    """The spec of a data type; a run landed without one (earlier Knit payloads) is ``ats_applications``."""
    _load_built_in()
    found = _known.get(name or "ats_applications")
    if found is None:
        raise UnknownDataTypeError(
            f"No data type {name!r} is known to knit_provider; known: {', '.join(sorted(_known))}. "
            "A data type is a package with a SPEC: built in under knit_provider/data_types/, or your own named in "
            "$KNIT_DATA_TYPE_MODULES (README, Adding a data type)."
        )
    return found


def enabled() -> tuple[DataTypeSpec, ...]:
    """The types this deployment syncs: ``$KNIT_DATA_TYPES`` (comma-separated), else every built-in one and
    every one of ``$KNIT_DATA_TYPE_MODULES`` (naming a deployment's own type is what enables it)."""
    _load_built_in()
    chosen = [n.strip() for n in os.environ.get("KNIT_DATA_TYPES", "").split(",") if n.strip()]
    if not chosen:
        return tuple(_known[name] for name in _loaded)
    unknown = [n for n in chosen if n not in _known]
    if unknown:
        raise UnknownDataTypeError(
            f"KNIT_DATA_TYPES names {', '.join(map(repr, unknown))}, which knit_provider does not know; "
            f"known: {', '.join(sorted(_known))}."
        )
    return tuple(_known[name] for name in chosen)
