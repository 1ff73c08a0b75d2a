"""Deleting an account: the people and cards go, the billing records stay (anonymised owner).

Invoices, credit notes and payments must be kept (7 years in Japan) and numbered without gaps,
so the organisation row is never deleted: its name is replaced, its users and cards are
deleted, its subscription moves to Free, and `closed_at` is set. The invoices keep the buyer's
name they were issued with (a legal record). Every billing foreign key is PROTECT, so a cascade
that would take them is impossible.
"""
import logging

from django.db import transaction
from django.utils.translation import gettext as _

from accounts.audit import audit_record
from accounts.models import Organisation, User
from billing import gateway
from billing.errors import PaymentPending, ProcessorUnavailable
from billing.models import Payment, PaymentMethod, Status, Subscription
from billing.services.charging import payments_settle_open
from billing.services.subscriptions import subscription_save, subscription_transition
from store import clock
from store.models import Plan

logger = logging.getLogger(__name__)


def organisation_delete(*, organisation: Organisation, acting_user: User) -> None:
    """Close the account: the processor's customer first (no transaction open), then, in one
    transaction, anonymise the organisation and delete its people and cards."""
    payments_settle_open(organisation=organisation, actor=acting_user)
    if Payment.objects.filter(organisation=organisation, state__in=Payment.OPEN).exists():
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
