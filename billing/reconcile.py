"""Kanri's card payments against the processor's charges, both ways (`manage.py
reconcile_processor`): every charge the processor made has its payment in Kanri with the same
amount and the same refunds, and every payment Kanri records as charged was charged.

The processor is asked customer by customer, with no transaction open. An attempt still open
(its outcome being settled) is Kanri's record of that charge, made before the call: not a
difference; the settle job records the answer. The same for a refund attempt still open.
"""
from dataclasses import dataclass

from billing import gateway
from billing.models import Payment, Refund, Subscription
from store.money import zero

CHARGED = (Payment.State.SUCCEEDED, Payment.State.REFUNDED)


@dataclass(frozen=True)
class Difference:
    organisation: str
    intent_id: str
    detail: str

    def __str__(self) -> str:
        return f"{self.organisation}: {self.intent_id or '(no intent)'}: {self.detail}"


def _refunded(payment: Payment):
    """What Kanri records as given back of a payment (a whole refund of a charge that could not
    be applied leaves `amount_refunded` empty)."""
    if payment.amount_refunded is not None:
        return payment.amount_refunded
    if payment.state == Payment.State.REFUNDED:
        return payment.amount
    return zero(str(payment.amount.currency))


def _compare(organisation: str, payments: dict[str, Payment],
             charges: list[gateway.Charge], refunding: frozenset = frozenset()) -> list[Difference]:
    differences = []
    seen = set()
    for charge in charges:
        if not charge.succeeded:
            continue
        seen.add(charge.intent_id)
        payment = payments.get(charge.intent_id)
        if payment is None:
            differences.append(Difference(organisation, charge.intent_id,
                                          f"the processor charged {charge.amount}; Kanri has "
                                          "no payment for it"))
        elif payment.state in Payment.OPEN:
            continue  # recorded before the call; the settle job records the answer
        elif payment.state not in CHARGED:
            differences.append(Difference(organisation, charge.intent_id,
                                          f"the processor charged {charge.amount}; Kanri "
                                          f"records the attempt as {payment.state}"))
        else:
            if payment.amount != charge.amount:
                differences.append(Difference(organisation, charge.intent_id,
                                              f"the processor charged {charge.amount}; Kanri "
                                              f"records {payment.amount}"))
            if _refunded(payment) != charge.refunded and charge.intent_id not in refunding:
                differences.append(Difference(organisation, charge.intent_id,
                                              f"the processor refunded {charge.refunded}; "
                                              f"Kanri records {_refunded(payment)}"))
    for intent_id, payment in payments.items():
        if payment.state in CHARGED and intent_id not in seen:
            differences.append(Difference(organisation, intent_id,
                                          f"Kanri records {payment.amount} charged; the "
                                          "processor has no such charge"))
    return differences


def processor_differences(*, since=None) -> list[Difference]:
    """Every difference between the processor's charges and Kanri's card payments, for each
    organisation the processor knows as a customer (created on or after `since`, a datetime)."""
    differences = []
    for subscription in (Subscription.objects.exclude(processor_customer_id="")
                         .select_related("organisation").order_by("pk")):
        organisation = f"organisation {subscription.organisation_id} " \
                       f"({subscription.organisation.name})"
        payments = Payment.objects.filter(organisation_id=subscription.organisation_id,
                                          paid_with=Payment.Source.CARD).exclude(processor_id="")
        if since is not None:
            payments = payments.filter(created_at__gte=since)
        try:
            charges = gateway.charges_list(
                customer_id=subscription.processor_customer_id,
                since=int(since.timestamp()) - 1 if since is not None else None)
        except gateway.ResourceMissing:
            charges = []  # the customer was deleted (a closed account): nothing to list
        # A refund attempt still open is Kanri's record of that refund, made before the call.
        refunding = frozenset(Refund.objects.filter(
            state=Refund.State.PENDING, payment__organisation_id=subscription.organisation_id)
            .values_list("payment__processor_id", flat=True))
        differences.extend(_compare(organisation, {p.processor_id: p for p in payments},
                                    charges, refunding))
    return differences
