"""A local stand-in for Knit: its sync API and its webhook deliveries, seeded, at any size.

A dev and test tool (``python -m knit_simulator --help``); the provider never imports it.
``knit_simulator.testing`` starts one for a test. The CLI, endpoints and ground truth are
described in ``docs/internals.md`` (section "Simulator").
"""
