"""Deleting an account: the people and cards go, the billing records stay (anonymised owner).

Invoices, credit notes and payments must be kept (7 years in Japan) and numbered without gaps,
so the organisation row is never deleted: its name is replaced, its users and cards are
deleted, its subscription moves to Free, and `closed_at` is set. Its books are closed too: an
open renewal invoice is voided (giving back the credit it spent), and the account credit left is
forfeited with an audited ledger entry, since credit is never paid out. The invoices keep the
buyer's name they were issued with (a legal record). Every billing foreign key is PROTECT, so a
cascade that would take them is impossible.
"""
import logging

from django.db import transaction
from django.utils.translation import gettext as _

from accounts.audit import audit_record
from accounts.models import Organisation, User
from billing import gateway
from billing.errors import PaymentPending, ProcessorUnavailable
from billing.models import (
    CreditEntry,
    Invoice,
    Payment,
    PaymentMethod,
    Status,
    Subscription,
)
from billing.services.charging import payments_settle_open
from billing.services.invoices import invoices_void
from billing.services.subscriptions import subscription_save, subscription_transition
from store import clock
from store.models import Plan
from store.money import zero

logger = logging.getLogger(__name__)


def organisation_delete(*, organisation: Organisation, acting_user: User) -> None:
    """Close the account: the processor's customer first (no transaction open), then, in one
    transaction, anonymise the organisation and delete its people and cards."""
    payments_settle_open(organisation=organisation, actor=acting_user)
    if Payment.objects.open_for(organisation.pk).exists():
        raise PaymentPending(_("A payment is still being confirmed with the payment service. "
                               "Delete the account once it is settled (in a minute or two)."))
    customer_id = (Subscription.objects.filter(organisation=organisation)
                   .values_list("processor_customer_id", flat=True).get())
    if customer_id:
        try:
            gateway.customer_delete(customer_id=customer_id)
        except gateway.GatewayError as error:
            raise ProcessorUnavailable(_("The payment service is not reachable, so the account "
                                         "was not deleted. Try again in a minute.")) from error
    _close(organisation=organisation, acting_user=acting_user)


@transaction.atomic
def _close(*, organisation: Organisation, acting_user: User) -> None:
    # No join in a row lock (see billing.services.subscriptions.subscription_lock_for).
    subscription = Subscription.objects.select_for_update().get(organisation=organisation)
    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    before = {"name": organisation.name, "plan": subscription.plan.code,
              "users": organisation.users.count()}
    _close_books(subscription)
    subscription_transition(subscription=subscription, to=Status.FREE, actor=None,
                            reason="account deleted by its administrator")
    subscription.plan = Plan.objects.get(code="free")
    subscription.processor_customer_id = ""
    subscription.default_payment_method = None
    subscription.paid_invoice = None
    subscription_save(subscription)
    PaymentMethod.objects.filter(organisation=organisation).delete()
    organisation.name = f"Deleted organisation {organisation.pk}"
    organisation.closed_at = clock.now()
    organisation.save(update_fields=["name", "closed_at"])
    audit_record(organisation=organisation, actor=None, action="organisation.deleted",
                 target=organisation, reason="deleted by its administrator", before=before)
    logger.info("organisation %s deleted by %s", organisation.pk, acting_user.email)
    organisation.users.all().delete()


def _close_books(subscription: Subscription) -> None:
    """Nothing owed, nothing owing: the open renewal voided (its credit given back), then all the
    credit forfeited (the caller holds the subscription's lock)."""
    open_invoices = list(Invoice.objects.filter(subscription=subscription,
                                                state=Invoice.State.OPEN)
                         .values_list("pk", flat=True))
    returned = invoices_void(invoice_ids=open_invoices).get(subscription.pk)
    if returned is not None:
        subscription.credit_balance += returned
    subscription.open_invoice = None
    subscription.payment_failed_at = subscription.grace_ends_at = None
    subscription.next_retry_at = subscription.locked_at = None
    subscription.retries_made = 0
    balance = subscription.credit_balance
    if balance.amount <= 0:
        return
    CreditEntry.objects.create(organisation_id=subscription.organisation_id,
                               kind=CreditEntry.Kind.FORFEITED, amount=-balance)
    subscription.credit_balance = zero(subscription.currency)
    audit_record(organisation=subscription.organisation, actor=None, action="credit.forfeited",
                 target=subscription,
                 before={"credit_balance": str(balance)},
                 after={"credit_balance": str(subscription.credit_balance)},
                 reason="account deleted: credit is never paid out")
