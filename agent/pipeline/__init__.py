"""Per-robot processing: segments → model routes → scores → alarm decisions, drift, thresholds.

Pure computation driven by the daemon's main loop (see docs/architecture.md).
"""
