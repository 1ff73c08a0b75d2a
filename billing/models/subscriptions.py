"""One subscription per organisation, its status history and the trials it has used."""
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from djmoney.models.fields import MoneyField

from accounts.models import ActorKind, Organisation
from store import clock
from store.models import BillingCycle, Plan, Price


class Status(models.TextChoices):
    FREE = "free", _("Free")
    TRIALING = "trialing", _("Trial")
    ACTIVE = "active", _("Active")
    PAST_DUE = "past_due", _("Payment overdue")
    LOCKED = "locked", _("Locked")


# The one map of legal moves; only billing.services.subscriptions moves a status.
TRANSITIONS: dict[str, set[str]] = {
    Status.FREE: {Status.TRIALING, Status.ACTIVE},
    Status.TRIALING: {Status.ACTIVE, Status.FREE},
    Status.ACTIVE: {Status.PAST_DUE, Status.FREE},
    Status.PAST_DUE: {Status.ACTIVE, Status.LOCKED, Status.FREE},
    # LOCKED → PAST_DUE only by support staff, with a new grace end (billing.services.support).
    Status.LOCKED: {Status.ACTIVE, Status.PAST_DUE, Status.FREE},
}


class Subscription(models.Model):
    organisation = models.OneToOneField(Organisation, on_delete=models.PROTECT,
                                        related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    cycle = models.CharField(max_length=10, choices=BillingCycle.choices,
                             default=BillingCycle.MONTHLY)
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    regular_licences = models.PositiveIntegerField(default=3)
    team_licences = models.PositiveIntegerField(default=0)
    storage_units = models.PositiveIntegerField(default=0)
    # The price versions this subscription pays; credits for unused time use these.
    plan_price = models.ForeignKey(Price, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    team_price = models.ForeignKey(Price, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    storage_price = models.ForeignKey(Price, null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.FREE)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    # Periods are counted from this moment on the organisation's clock (billing.periods).
    billing_anchor = models.DateTimeField(null=True, blank=True)
    # The invoice that paid the running period: its charge lines are what unused time credits.
    paid_invoice = models.ForeignKey("billing.Invoice", null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="+")
    # Dunning: the renewal invoice awaiting payment, when the grace period ends, the next retry
    # and how many retries were made; when the account was locked.
    open_invoice = models.ForeignKey("billing.Invoice", null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="+")
    payment_failed_at = models.DateTimeField(null=True, blank=True)
    grace_ends_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    retries_made = models.PositiveSmallIntegerField(default=0)
    locked_at = models.DateTimeField(null=True, blank=True)
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    credit_balance = MoneyField(max_digits=14, decimal_places=2, default=0,
                                currency_field_name="credit_balance_currency",
                                currency_choices=settings.CURRENCY_CHOICES)
    default_payment_method = models.ForeignKey("billing.PaymentMethod", null=True, blank=True,
                                               on_delete=models.SET_NULL, related_name="+")
    processor_customer_id = models.CharField(max_length=64, blank=True)
    # Bumped by every change; a quote made against another version is stale.
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        indexes = [
            # What the sweeps select: one index scan per sweep.
            models.Index(fields=["status", "current_period_end"], name="sub_due_renewal"),
            models.Index(fields=["status", "next_retry_at"], name="sub_due_retry"),
            models.Index(fields=["status", "grace_ends_at"], name="sub_due_lock"),
            models.Index(fields=["status", "locked_at"], name="sub_due_free"),
            models.Index(fields=["status", "trial_ends_at"], name="sub_due_trial"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(regular_licences__gte=1),
                                   name="subscription_has_a_regular_licence"),
            models.CheckConstraint(condition=models.Q(credit_balance__gte=0),
                                   name="subscription_credit_not_negative"),
        ]
        # What support staff may do to a subscription through Django admin (the "support" group).
        permissions = [
            ("support_extend_trial", _("Can extend a trial (support)")),
            ("support_unlock", _("Can unlock an account with a new grace end (support)")),
            ("support_grant_credit", _("Can grant account credit (support)")),
            ("support_retry_charge", _("Can retry a failed renewal charge (support)")),
            ("support_change_plan", _("Can change the plan for an organisation (support)")),
        ]

    def __str__(self) -> str:
        return f"{self.organisation} · {self.plan} ({self.get_status_display()})"

    @property
    def is_paid(self) -> bool:
        """On a paid plan (whether or not the running period was paid for)."""
        return self.status in {Status.ACTIVE, Status.PAST_DUE, Status.LOCKED}

    @property
    def period_was_paid(self) -> bool:
        """The one rule for which time counts as paid, so unused time can be credited: only
        an active subscription's running period, paid by the invoice it points at. A trial is
        free; past_due and locked are periods whose renewal was never paid."""
        return self.status == Status.ACTIVE and self.paid_invoice_id is not None


class SubscriptionStatusChange(models.Model):
    """Append-only: every status move, who made it, and why."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT,
                                     related_name="status_changes")
    from_status = models.CharField(max_length=10, choices=Status.choices)
    to_status = models.CharField(max_length=10, choices=Status.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status}"


class TrialUse(models.Model):
    """A trial an organisation has started: one per organisation and plan, ever."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE,
                                     related_name="trials")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(default=clock.now)
    ends_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation", "plan"],
                                               name="one_trial_per_org_and_plan")]

    def __str__(self) -> str:
        return f"{self.organisation} tried {self.plan}"
