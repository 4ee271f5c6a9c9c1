"""The library both sides run: RaPP scoring, features and segmentation, the bundle format,
inference backends, recordings and atomic writes.

The exporter builds bundles with it and the agent serves them with it, so there is exactly
one implementation of everything the two must agree on. It imports nothing else of the agent
(sources, pipeline, sinks, OTA, daemon); see docs/architecture.md.
"""
