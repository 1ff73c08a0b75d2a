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


def decline_message(code: str) -> str:
    return str(MESSAGES.get(code or "", MESSAGES["card_declined"]))
