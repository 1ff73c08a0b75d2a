"""Domain errors whose message a person can read."""


class BillingError(Exception):
    """A refused billing action; `str()` is shown to the user. Nothing was charged or changed."""
