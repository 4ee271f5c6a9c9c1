"""Exception family of the bundle subsystem."""

from agent.core.errors import AgentInputError


class BundleError(AgentInputError, ValueError):
    """A model bundle that cannot be used; the message names the file and what is wrong."""
