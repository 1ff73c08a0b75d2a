"""Domain errors whose message a person can read."""


class ApiKeyError(Exception):
    """A refused change to an API key; `str()` is shown to the administrator."""
