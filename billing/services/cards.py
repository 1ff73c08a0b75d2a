"""購入設定 → 決済方法 / Purchase settings → Payment methods: an organisation's cards.

Cards are entered in the processor's own form (Stripe.js); Kanri stores the processor's id, brand,
last 4 and expiry. The processor is called with no transaction open: attach before the row is
written, detach before the row is deleted, so Kanri never lists a card the processor could not
charge, and never keeps charging one it was asked to forget. Every change is audited.

Rules:
- The first card becomes the default; a new card becomes the default when asked.
- Changing a card (変更する) is entering its replacement (a new number, or the same number with
  its new expiry): the replacement takes the old card's place, default included, and the old card
  is detached.
- Deleting the default moves the default to the newest other card. Deleting the last card while
  a paid plan renews needs a confirmation that says renewals will fail.
- A card that an attempt still being confirmed uses cannot be deleted or replaced until it
  settles.
"""
import re

from django.db import transaction
from django.utils.translation import gettext as _

from accounts.audit import audit_record
from accounts.models import Organisation, User
from billing import gateway
from billing.declines import decline_message
from billing.errors import BillingError, CardDeclined
from billing.models import Payment, PaymentMethod, Subscription
from billing.selectors import RENEWING
from billing.services.payments import _processor_unavailable, processor_customer_ensure


class ConfirmationRequired(BillingError):
    """The change needs the admin to confirm what it will cause; `str()` says what."""

    code = "confirmation_required"


def _card_facts(method: PaymentMethod) -> dict:
    return {"brand": method.brand, "last4": method.last4,
            "expiry": f"{method.exp_month:02d}/{method.exp_year}"}


# The processor's ids are letters, digits and underscores, at most 255 characters. Anything else
# was never confirmed by its card form: refused before a customer is made or a request is sent,
# which a 10,000-character id breaks (and the break reads as "the service is down").
PAYMENT_METHOD_ID = re.compile(r"pm_[A-Za-z0-9_]{1,252}")


def _attach(*, organisation: Organisation, payment_method_id: str) -> gateway.Card:
    if not PAYMENT_METHOD_ID.fullmatch(payment_method_id):
        raise BillingError(_("The payment service does not know this card. Enter it again."),
                           code="card_unknown")
    customer_id = processor_customer_ensure(organisation=organisation)
    try:
        return gateway.card_attach(payment_method_id=payment_method_id, customer_id=customer_id)
    except gateway.CardRefused as refused:
        raise CardDeclined(decline_message(refused.code), decline_code=refused.code) \
            from refused
    except gateway.ResourceMissing as error:
        raise BillingError(_("The payment service does not know this card. Enter it again."),
                           code="card_unknown") from error
    except gateway.GatewayUnavailable as error:
        raise _processor_unavailable(error) from error
    except gateway.GatewayError as error:
        raise BillingError(str(error), code="processor_error") from error


def _detach(method: PaymentMethod) -> None:
    try:
        gateway.card_detach(payment_method_id=method.processor_id)
    except gateway.GatewayUnavailable as error:
        raise BillingError(_("The payment service is not reachable right now, so the card "
                             "was not removed. Try again in a minute."),
                           code="processor_unavailable") from error
    except gateway.GatewayError as error:
        raise BillingError(str(error), code="processor_error") from error


def _refuse_while_in_use(method: PaymentMethod) -> None:
    if Payment.objects.open_for(method.organisation_id).filter(
            card_processor_id=method.processor_id).exists():
        raise BillingError(_("A payment with this card is being confirmed with the payment "
                             "service. Try again in a minute."), code="payment_pending")


def _store(organisation: Organisation, card: gateway.Card) -> tuple[PaymentMethod, bool]:
    return PaymentMethod.objects.update_or_create(
        processor_id=card.processor_id, organisation=organisation,
        defaults={"brand": card.brand, "last4": card.last4, "exp_month": card.exp_month,
                  "exp_year": card.exp_year})


def card_add(*, organisation: Organisation, payment_method_id: str, acting_user: User,
             make_default: bool) -> PaymentMethod:
    """Store a card the processor confirmed; it becomes the default when asked, or when the
    organisation has none."""
    card = _attach(organisation=organisation, payment_method_id=payment_method_id)
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(organisation=organisation)
        method, created = _store(organisation, card)
        default = make_default or subscription.default_payment_method_id is None
        if default:
            subscription.default_payment_method = method
            subscription.save(update_fields=["default_payment_method"])
        audit_record(organisation=organisation, actor=acting_user,
                     action="card.added" if created else "card.saved", target=method,
                     after={**_card_facts(method), "default": default})
    return method


def card_make_default(*, organisation: Organisation, method_id: int,
                      acting_user: User) -> PaymentMethod:
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(organisation=organisation)
        method = PaymentMethod.objects.get(pk=method_id, organisation=organisation)
        before = subscription.default_payment_method_id
        if before != method.pk:
            subscription.default_payment_method = method
            subscription.save(update_fields=["default_payment_method"])
            audit_record(organisation=organisation, actor=acting_user, action="card.default",
                         target=method, before={"default_card_id": before},
                         after=_card_facts(method))
    return method


def card_replace(*, organisation: Organisation, method_id: int, payment_method_id: str,
                 acting_user: User) -> PaymentMethod:
    """変更する / Change: the card entered replaces card `method_id` (default included), and
    the old card is detached at the processor."""
    old = PaymentMethod.objects.get(pk=method_id, organisation=organisation)
    _refuse_while_in_use(old)
    card = _attach(organisation=organisation, payment_method_id=payment_method_id)
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(organisation=organisation)
        method, _created = _store(organisation, card)
        if subscription.default_payment_method_id == old.pk:
            subscription.default_payment_method = method
            subscription.save(update_fields=["default_payment_method"])
        audit_record(organisation=organisation, actor=acting_user, action="card.replaced",
                     target=method, before=_card_facts(old), after=_card_facts(method))
    try:
        _detach(old)
    except BillingError as refused:
        raise BillingError(_("The new card is saved. The old card could not be removed: "
                             "%(why)s") % {"why": refused}, code=refused.code) from refused
    PaymentMethod.objects.filter(pk=old.pk).delete()
    return method


def card_delete_consequence(*, organisation: Organisation, method_id: int) -> str:
    """What deleting this card causes that the admin must confirm first, or "" if nothing."""
    subscription = Subscription.objects.select_related("plan").get(organisation=organisation)
    method = PaymentMethod.objects.get(pk=method_id, organisation=organisation)
    others = PaymentMethod.objects.filter(organisation=organisation).exclude(pk=method.pk)
    if subscription.status in RENEWING and not others.exists():
        return _("This is your only card and your %(plan)s plan renews automatically: without "
                 "a card, renewals will fail and, after the grace period, the account will be "
                 "locked. Add another card first, or delete it anyway.") % {
            "plan": subscription.plan.display_name}
    return ""


def card_delete(*, organisation: Organisation, method_id: int, acting_user: User,
                confirmed: bool) -> PaymentMethod | None:
    """削除する / Delete: detach the card at the processor, then forget it. Returns the card
    that became the default instead, if the deleted one was the default."""
    method = PaymentMethod.objects.get(pk=method_id, organisation=organisation)
    consequence = card_delete_consequence(organisation=organisation, method_id=method_id)
    if consequence and not confirmed:
        raise ConfirmationRequired(consequence)
    _refuse_while_in_use(method)
    _detach(method)
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(organisation=organisation)
        if not PaymentMethod.objects.filter(pk=method.pk).exists():
            return None  # forgotten meanwhile (the processor's detach webhook came first)
        return card_forget(subscription=subscription, method=method, actor=acting_user,
                           reason="confirmed: renewals will fail" if consequence else "")


def card_forget(*, subscription: Subscription, method: PaymentMethod, actor: User | None,
                reason: str) -> PaymentMethod | None:
    """Forget a card the processor no longer charges: the default moves to the newest other
    card, the deletion is audited. The caller holds the subscription's lock; returns the new
    default if the forgotten card was the default."""
    successor = None
    if subscription.default_payment_method_id == method.pk:
        successor = (PaymentMethod.objects.filter(organisation_id=method.organisation_id)
                     .exclude(pk=method.pk).order_by("-created_at", "-pk").first())
        subscription.default_payment_method = successor
        subscription.save(update_fields=["default_payment_method"])
    audit_record(organisation=subscription.organisation, actor=actor, action="card.deleted",
                 target=method, before=_card_facts(method),
                 after={"default_card_id": successor.pk if successor else None}, reason=reason)
    PaymentMethod.objects.filter(pk=method.pk).delete()
    return successor
