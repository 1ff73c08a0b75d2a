"""The processor's decline codes, said in the user's language (the processor words them in
English only). Unknown codes fall back to the generic message, never to silence."""
from django.utils.translation import gettext_lazy as _

MESSAGES = {
    "card_declined": _("Your card was declined. Use another card or ask your card issuer."),
    "generic_decline": _("Your card was declined. Use another card or ask your card issuer."),
    "do_not_honor": _("Your card was declined. Use another card or ask your card issuer."),
    "insufficient_funds": _("Your card has insufficient funds. Use another card."),
    "expired_card": _("Your card has expired. Add a card that is valid."),
    "incorrect_cvc": _("The card's security code is wrong. Enter the card again."),
    "incorrect_number": _("The card number is wrong. Enter the card again."),
    "processing_error": _("The card issuer could not process the payment. Try again in a "
                          "minute."),
    "lost_card": _("Your card was declined. Use another card."),
    "stolen_card": _("Your card was declined. Use another card."),
    "fraudulent": _("Your card was declined. Use another card."),
    "card_velocity_exceeded": _("Your card's limit was reached. Use another card or try "
                                "later."),
    "authentication_required": _("Your card issuer asks for authentication, which this "
                                 "payment cannot do. Use another card."),
    "payment_intent_authentication_failure": _("The card's authentication failed. Use another "
                                               "card."),
}


# Why an attempt failed when no card was refused: Kanri's own codes.
OWN = {
    "no_card": _("There is no card on file."),
    "canceled": _("The payment was cancelled before it charged: nothing was charged."),
    "processor_customer_missing": _("The payment service no longer knew your account. Add "
                                    "your card again."),
}


def decline_message(code: str) -> str:
    """The processor's decline code said in the active language; an unknown code gets the
    generic message with the code, so support can look it up."""
    if not code or code in MESSAGES:
        return str(MESSAGES.get(code or "", MESSAGES["card_declined"]))
    return _("Your card was declined (%(code)s). Use another card or ask your card "
             "issuer.") % {"code": code}


def failure_message(code: str, recorded: str = "") -> str:
    """Why an attempt failed, in the active language: Kanri's own reasons, then the
    processor's decline codes; without a code, what was recorded at the time."""
    if code in OWN:
        return str(OWN[code])
    return decline_message(code) if code else recorded
