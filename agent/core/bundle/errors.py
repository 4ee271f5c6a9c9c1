"""Exception family of the bundle subsystem."""


class BundleError(ValueError):
    """A model bundle that cannot be used; the message names the file and what is wrong."""
