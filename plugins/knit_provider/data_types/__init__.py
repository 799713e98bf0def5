"""Knit's data types, one package each: what is synced, how it is normalized, which tables it fills."""

from knit_provider.data_types.registry import enabled, get, known, register
from knit_provider.data_types.spec import DataTypeSpec, Model, Step

__all__ = ["DataTypeSpec", "Model", "Step", "enabled", "get", "known", "register"]
