"""Hooks: the code that talks to Knit."""
