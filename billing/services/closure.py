"""Deleting an account: the processor's customer first, then every row of the organisation."""
import logging

from django.db import transaction
from django.utils.translation import gettext as _

from accounts.audit import audit_record
from accounts.models import Organisation, User
from billing import gateway
from billing.errors import BillingError
from billing.models import Subscription

logger = logging.getLogger(__name__)


@transaction.atomic
def organisation_delete(*, organisation: Organisation, acting_user: User) -> None:
    """Delete the organisation's data and its customer at the processor. One audit row outlives
    it (with no organisation), saying who deleted what and when."""
    subscription = Subscription.objects.select_for_update().get(organisation=organisation)
    if subscription.processor_customer_id:
        try:
            gateway.customer_delete(customer_id=subscription.processor_customer_id)
        except gateway.GatewayUnavailable as error:
            raise BillingError(_("The payment service is not reachable, so the account was not "
                                 "deleted. Try again in a minute.")) from error
    audit_record(organisation=None, actor=None, action="organisation.deleted",
                 target=organisation, reason=f"deleted by {acting_user.email}",
                 before={"name": organisation.name, "plan": subscription.plan.code,
                         "users": organisation.users.count()})
    logger.info("organisation %s deleted by %s", organisation.pk, acting_user.email)
    organisation.delete()
