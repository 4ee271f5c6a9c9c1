"""Benchmarks and published evaluation (issue #8, SPEC §11): ``python -m benchmarks.run``."""
