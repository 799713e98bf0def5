"""Expose the Knit plugin when the provider is used from the plugins folder without being installed.

An installed provider registers it through its entry point; exposing it here as well would make
Airflow load it twice and report the second as an error.
"""

from __future__ import annotations

from knit_provider.plugin import KnitPlugin, registered_by_entry_point

if registered_by_entry_point():
    del KnitPlugin
