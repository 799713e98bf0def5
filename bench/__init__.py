"""Benchmarks: each ``bench_<area>.py`` measures one part against a baseline run beside it."""
