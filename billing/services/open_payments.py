"""The one rule for an attempt whose outcome is not settled yet: nothing else may change what it
pays for until it is (SPEC "The books" 7). The query is `Payment.objects.open_for`; this module
holds the refusal a person reads. It imports no service, so every service may use it."""
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from accounts.models import Organisation
from billing.errors import PaymentPending
from billing.models import Payment
from store import clock
from store.money import format_money


def refuse_while_payment_open(*, organisation: Organisation) -> None:
    """No new change may be quoted while an earlier payment's outcome is unsettled: it may have
    charged the card for a change that is not applied yet. Callers settle open attempts first
    (billing.services.charging.payments_settle_open), outside any transaction."""
    open_payment = Payment.objects.open_for(organisation.pk).first()
    if open_payment is not None:
        raise PaymentPending(_(
            "A payment of %(amount)s made at %(time)s is still being confirmed with the payment "
            "service. Its change is applied as soon as the outcome is known; you cannot start "
            "another change until then. Try again in a minute.")
            % {"amount": format_money(open_payment.amount, get_language()),
               "time": clock.localtime_label(open_payment.created_at)})
