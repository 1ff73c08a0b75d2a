"""Domain errors: a stable `code` for programs and tests, a message a person can read."""


class BillingError(Exception):
    """A refused billing action; `str()` is shown to the user. Nothing was charged or changed
    unless a subclass says otherwise."""

    code = "refused"

    def __init__(self, message: str = "", *, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class IllegalTransition(BillingError):
    code = "illegal_transition"


class StaleQuote(BillingError):
    """The quote no longer prices what would be charged: expired, prices or subscription
    changed. Raised only before any attempt to charge it exists."""

    code = "quote_stale"


class CardDeclined(BillingError):
    """The processor refused the card. `decline_code` is the processor's reason code."""

    code = "card_declined"

    def __init__(self, message: str, *, decline_code: str = ""):
        super().__init__(message)
        self.decline_code = decline_code


class ProcessorUnavailable(BillingError):
    """The processor could not be asked. Says nothing was charged only where that is known."""

    code = "processor_unavailable"


class PaymentPending(BillingError):
    """An earlier payment's outcome is not settled yet; nothing new may start until it is."""

    code = "payment_pending"


class NoPaymentMethod(BillingError):
    code = "no_card"


class ProcessorCustomerMissing(BillingError):
    """The processor no longer knows this organisation's customer: the card must be added
    again. Not a decline."""

    code = "processor_customer_missing"
