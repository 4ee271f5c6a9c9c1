"""Benchmarks and published evaluation: ``python -m benchmarks.run``."""
