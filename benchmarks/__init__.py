"""Benchmarks of the pipeline at several data sizes (not tests; CI does not run them)."""
