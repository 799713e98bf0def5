"""Triggers that wait on the landing store: one run's allConsumed, and every completed run for the asset watcher."""
