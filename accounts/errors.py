"""Domain errors whose message a person can read."""


class AccountsError(Exception):
    """A refused change to an organisation or its people; `str()` is shown to the user."""
