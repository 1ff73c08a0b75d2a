"""Billing test helpers: cards made at the sandbox as the browser's card form would make them."""
import stripe
from django.conf import settings

from billing.ledger_checks import ledger_mismatches
from billing.services.cards import card_add

GOOD_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000341"  # attaches, then every charge is declined


def card_on_file(*, organisation, acting_user, number: str = GOOD_CARD):
    """What Stripe.js does in the browser (card number → payment method at the processor),
    done here with the SDK because no browser is involved; then Kanri's own service."""
    method = _sandbox().v1.payment_methods.create(params={
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
    return card_add(organisation=organisation, payment_method_id=method.id,
                    acting_user=acting_user, make_default=True)


def processor_card(number: str = GOOD_CARD, *, exp_month: int = 12, exp_year: int = 2030) -> str:
    """A card as Stripe.js leaves it after the browser's form: a payment method id."""
    return _sandbox().v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": exp_month,
                                 "exp_year": exp_year, "cvc": "123"}}).id


def processor_card_customer(payment_method_id: str) -> str | None:
    """The customer a card is attached to at the processor (None once detached)."""
    return _sandbox().v1.payment_methods.retrieve(payment_method_id).customer


def processor_charges(customer_id: str) -> list:
    """Every PaymentIntent the sandbox holds for one customer (it cannot filter by customer,
    and it lists the whole session's intents oldest first: page through all of them)."""
    intents = _sandbox().v1.payment_intents.list(params={"limit": 100})
    return [i for i in intents.auto_paging_iter() if i.customer == customer_id]


def processor_customer_gone(customer_id: str) -> bool:
    """Stripe answers a deleted customer with `deleted: true`; localstripe with a 404."""
    try:
        return _sandbox().v1.customers.retrieve(customer_id).get("deleted") is True
    except stripe.InvalidRequestError as error:
        return error.http_status == 404


def _sandbox() -> stripe.StripeClient:
    return stripe.StripeClient(settings.STRIPE_API_KEY,
                               base_addresses={"api": settings.STRIPE_API_BASE})


def assert_ledger_matches() -> None:
    """Every subscription's licences and storage units equal its licence ledger's sums (call it
    after a scenario; billing.ledger_checks does the one-query comparison)."""
    mismatches = ledger_mismatches()
    assert not mismatches, "\n".join(str(mismatch) for mismatch in mismatches)
