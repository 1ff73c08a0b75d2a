"""Organisations, users with a role and a licence type, and the append-only audit trail."""
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from store import clock


class Organisation(models.Model):
    name = models.CharField(_("organisation name"), max_length=200)
    currency = models.CharField(_("billing currency"), max_length=3,
                                choices=settings.CURRENCY_CHOICES, default="JPY")
    # The language of the emails the organisation gets (the portal follows each browser).
    language = models.CharField(_("language"), max_length=5, choices=settings.LANGUAGES,
                                default="ja")
    # Billing periods run on this wall clock (an IANA zone name).
    time_zone = models.CharField(_("time zone"), max_length=64,
                                 default=settings.KANRI_DEFAULT_TIME_ZONE)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    # Set when the account is deleted: the row stays (its invoices must), anonymised.
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Usage as the CRM last reported it; plan limits and downgrade warnings compare against it.
    # `usage_reported_at` is the report's own time: an older report never overwrites a newer one.
    record_count = models.PositiveBigIntegerField(default=0)
    storage_used_mb = models.PositiveBigIntegerField(default=0)
    usage_reported_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("organisation")

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", _("Administrator")
    MEMBER = "member", _("Member")


class LicenceType(models.TextChoices):
    REGULAR = "regular", _("Regular user")
    TEAM = "team", _("Team user")


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email, password=None, **fields):
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)  # None gives an unusable password (invited users)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)

    def get_by_natural_key(self, username):
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):
    """A person: a member of one organisation, or a support-staff account with none.

    `is_active` False means deactivated: the user cannot log in, and (later) frees no licence.
    """

    email = models.EmailField(_("email address"), unique=True)
    name = models.CharField(_("name"), max_length=150, blank=True)
    organisation = models.ForeignKey(Organisation, null=True, blank=True,
                                     on_delete=models.CASCADE, related_name="users")
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    licence_type = models.CharField(_("licence type"), max_length=10,
                                    choices=LicenceType.choices, default=LicenceType.REGULAR)
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(_("support staff"), default=False)
    date_joined = models.DateTimeField(default=clock.now, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
            models.CheckConstraint(condition=Q(organisation__isnull=False) | Q(is_staff=True),
                                   name="user_has_org_unless_staff"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_org_admin(self) -> bool:
        return self.is_active and self.organisation_id is not None and self.role == Role.ADMIN

    @property
    def display_name(self) -> str:
        return self.name or self.email


class ActorKind(models.TextChoices):
    USER = "user", _("User")
    STAFF = "staff", _("Support staff")
    SYSTEM = "system", _("System")


class AuditEvent(models.Model):
    """One change, written in the same transaction as the change. Never updated or deleted
    (except with its organisation, when the account is deleted)."""

    organisation = models.ForeignKey(Organisation, null=True, on_delete=models.CASCADE,
                                     related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_label = models.CharField(max_length=254, help_text=_("Who, as it read at the time."))
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=clock.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("audit event")
        indexes = [models.Index(fields=["organisation", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action}"

    # What the activity page prints.

    def get_action_display(self) -> str:
        return str(ACTION_LABELS.get(self.action, self.action))

    @property
    def who(self) -> str:
        """The actor as the organisation sees it: support staff are "Kanri support"."""
        if self.actor_kind == ActorKind.STAFF:
            return str(_("Kanri support"))
        if self.actor_kind == ActorKind.SYSTEM:
            return str(_("Kanri (automatic)"))
        return self.actor_label

    @property
    def changes(self) -> list[str]:
        """"what: before → after" for each value the change touched, as the page prints it (one
        line of text each: a page lists 25 events of several values)."""
        keys = [key for key in {**self.before, **self.after}
                if self.before.get(key) != self.after.get(key)]
        return [f"{FIELD_LABELS.get(key, key)}: {_shown(self.before.get(key))} → "
                f"{_shown(self.after.get(key))}" for key in keys]


def _shown(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return str(_("yes") if value else _("no"))
    return str(value)


ACTION_LABELS = {
    "organisation.created": _("Organisation created"),
    "organisation.deleted": _("Account deleted"),
    "user.added": _("User added"), "user.deactivated": _("User deactivated"),
    "user.reactivated": _("User reactivated"),
    "user.licence_changed": _("User's licence type changed"),
    "subscription.changed": _("Plan or licences changed"),
    "subscription.trial_started": _("Trial started"),
    "card.added": _("Card added"), "card.saved": _("Card saved"),
    "card.default": _("Default card changed"), "card.replaced": _("Card changed"),
    "card.deleted": _("Card deleted"), "card.updated": _("Card updated by the card issuer"),
    "payment.failed": _("Payment failed"), "payment.refunded": _("Payment refunded"),
    "invoice.minimum_charge_waived": _("Amount below the minimum charge waived"),
    "api_key.created": _("API key created"), "api_key.revoked": _("API key revoked"),
    "support.trial_extended": _("Trial extended"), "support.unlocked": _("Account unlocked"),
    "support.credit_granted": _("Account credit granted"),
    "support.charge_retried": _("Renewal charged again"),
    "support.refunded": _("Payment refunded"),
    "support.plan_changed": _("Plan changed on your behalf"),
    "support.email_resent": _("Email sent again"),
}
FIELD_LABELS = {
    "plan": _("Plan"), "cycle": _("Billing cycle"), "status": _("Status"),
    "regular_licences": _("Regular user licences"), "team_licences": _("Team user licences"),
    "storage_units": _("Extra storage (GB)"), "period_end": _("Period end"),
    "role": _("Role"), "licence_type": _("Licence type"), "is_active": _("Active"),
    "email": _("Email address"), "brand": _("Card"), "last4": _("Last 4 digits"),
    "expiry": _("Expiry"), "default": _("Default"), "name": _("Name"),
}
