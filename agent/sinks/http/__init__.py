"""The agent's read-only HTTP endpoint (``[http]``, off unless configured).

``/metrics`` (Prometheus), ``/healthz``, ``/readyz``, ``/status.json`` and the status page
``/``, all served from a snapshot the main loop publishes (agent/sinks/http/view.py); see
docs/metrics.md and docs/architecture.md.
"""

from agent.sinks.http.settings import HttpSettings, HttpSettingsError

__all__ = ["HttpSettings", "HttpSettingsError"]
