"""Settings shared by every part of the provider, read once, with explicit defaults."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta

KNIT_CONN_TYPE = "knit"
DEFAULT_KNIT_CONN_ID = "knit_default"
DEFAULT_LANDING_CONN_ID = "knit_landing_default"
DEFAULT_KNIT_HOST = "https://api.getknit.dev"

# The one channel a landed run event is announced on (DESIGN: named in one place).
NOTIFY_CHANNEL = "knit_sync_events"

ATS_APPLICATIONS = "ats_applications"
# The sync type whose run lists every active record: normalization treats it as a snapshot.
INITIAL_SYNC = "initial_sync"
DELTA_SYNC = "delta_sync"

RUN_EVENT_PREFIX = "sync.events."
EVENT_PROCESSED = "sync.events.processed"
EVENT_ALL_CONSUMED = "sync.events.allConsumed"
# Knit: "fired after an integration validation is complete" (the registry and the onboarding DAG read it).
EVENT_ACTIVATE = "app.integration.activate"
RECORD_EVENT_TYPES: tuple[str, ...] = ("record.new", "record.modified", "record.deleted")

# How long the landing store remembers an event id (Knit retries a delivery for four days; three of
# margin). The same interval is {landing}.dedup_window() in sql/landing/0003_partitioned_events.sql.
DEDUP_WINDOW = timedelta(days=7)

# Onboarding adopts the initial sync Knit starts by itself when an integration connects: a run whose first
# event landed at most this long before the activation's time is that sync (the activation is stamped with
# Knit's clock, and the run's first events may overtake it), one that landed earlier is older than the
# connection (onboarding.py).
ONBOARDING_ADOPT_MARGIN = timedelta(minutes=5)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def check_identifier(name: str, what: str) -> str:
    """Reject a schema name that is not a plain Postgres identifier, saying which setting it came from."""
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"{what}={name!r} is not a valid schema name: use letters, digits and underscores, "
            "starting with a letter or underscore, at most 63 characters."
        )
    return name


def quote_ident(name: str) -> str:
    """Quote an identifier for SQL; names are validated first, quoting keeps case and keywords safe."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Schemas:
    """Where the landing store and the normalized tables live."""

    landing: str = "knit_landing"
    target: str = "knit"

    def __post_init__(self) -> None:
        check_identifier(self.landing, "landing schema")
        check_identifier(self.target, "target schema")

    @classmethod
    def from_env(cls, landing: str | None = None, target: str | None = None) -> Schemas:
        """Explicit values win, then KNIT_LANDING_SCHEMA / KNIT_SCHEMA, then the defaults."""
        return cls(
            landing=landing or os.environ.get("KNIT_LANDING_SCHEMA") or "knit_landing",
            target=target or os.environ.get("KNIT_SCHEMA") or "knit",
        )
