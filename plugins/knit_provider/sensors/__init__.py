"""Sensors over the landing store."""
