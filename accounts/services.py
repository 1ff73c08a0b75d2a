"""Writes to organisations and their people; each one audited in its own transaction.

Every change to an organisation's people first locks the organisation's row, then re-reads what
it checks: two admins acting at once are served one after the other, and each sees the other's
change (so two cannot deactivate each other). A change that needs a free licence (add, reactivate,
change of licence type) first locks the subscription whose licences it counts. Locks are taken
in one order: subscription, organisation, user.
"""
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.audit import audit_record
from accounts.errors import AccountsError
from accounts.models import LicenceType, Organisation, Role, User
from billing.models import Subscription
from billing.services.licences import licence_require_free
from billing.services.subscriptions import subscription_create_free


def _user_state(user: User) -> dict:
    return {"role": user.role, "licence_type": user.licence_type, "is_active": user.is_active}


def _email_taken() -> AccountsError:
    return AccountsError(_("An account with this email address already exists."))


def _ensure_email_free(email: str) -> str:
    email = User.objects.normalize_email(email).strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise _email_taken()
    return email


def _create_user(email: str, password: str | None, **fields) -> User:
    """Create a user; a concurrent request that took the email first gets the same message."""
    try:
        with transaction.atomic():
            return User.objects.create_user(email, password, **fields)
    except IntegrityError as error:
        raise _email_taken() from error


@transaction.atomic
def organisation_sign_up(*, org_name: str, email: str, password: str,
                         currency: str = "JPY") -> User:
    """Create an organisation and its first administrator (a regular user)."""
    org_name = org_name.strip()
    if not org_name:
        raise AccountsError(_("Enter the organisation's name."))
    email = _ensure_email_free(email)
    validate_password(password, User(email=email))
    organisation = Organisation.objects.create(name=org_name, currency=currency)
    admin = _create_user(email, password, organisation=organisation, role=Role.ADMIN,
                         licence_type=LicenceType.REGULAR)
    subscription_create_free(organisation=organisation)
    audit_record(organisation=organisation, actor=admin, action="organisation.created",
                 target=organisation, after={"name": org_name, "currency": currency})
    return admin


@transaction.atomic
def user_add(*, organisation: Organisation, email: str, name: str = "", role: str = Role.MEMBER,
             licence_type: str = LicenceType.REGULAR, acting_user: User) -> User:
    """Add a person to the organisation and email them a link to choose their password."""
    from accounts.tasks import send_invitation  # tasks import services; keep the cycle lazy

    subscription = _lock_subscription(organisation.pk)
    organisation = _lock_organisation(organisation.pk)
    email = _ensure_email_free(email)
    licence_require_free(subscription=subscription, licence_type=licence_type)
    user = _create_user(email, None, organisation=organisation, name=name.strip(), role=role,
                        licence_type=licence_type)
    audit_record(organisation=organisation, actor=acting_user, action="user.added", target=user,
                 after={"email": email, **_user_state(user)})
    language = get_language()
    transaction.on_commit(lambda: send_invitation.delay(user.pk, language))
    return user


def _lock_subscription(organisation_id: int) -> Subscription:
    """The licences a people change is checked against, locked first (the one lock order:
    subscription, organisation, user), so a quote removing licences cannot interleave."""
    # No join: a plan changed while this waits would leave the row unmatched (see
    # billing.services.subscriptions.subscription_lock_for).
    return Subscription.objects.select_for_update().get(organisation_id=organisation_id)


def _lock_organisation(organisation_id: int) -> Organisation:
    """Wait for any other change to this organisation's people to commit. Locking the users a
    check counts would not do: a count locks no rows, and each of two admins deactivating the
    other locks a different user. NO KEY UPDATE still serialises these changes, and does not hold
    up transactions that only add rows pointing at the organisation (their key-share checks)."""
    return Organisation.objects.select_for_update(no_key=True).get(pk=organisation_id)


def _lock_user(*, organisation: Organisation, user_id: int) -> User:
    return User.objects.select_for_update().get(pk=user_id, organisation=organisation)


@transaction.atomic
def user_deactivate(*, user: User, acting_user: User, reason: str = "") -> User:
    """Deactivate a user: they can no longer log in. Their licence stays on the bill."""
    organisation = _lock_organisation(acting_user.organisation_id)
    user = _lock_user(organisation=organisation, user_id=user.pk)
    if user.pk == acting_user.pk:
        raise AccountsError(_("You cannot deactivate yourself."))
    if not user.is_active:
        raise AccountsError(_("%(email)s is already deactivated.") % {"email": user.email})
    if user.role == Role.ADMIN:
        admins = User.objects.filter(organisation=organisation, role=Role.ADMIN, is_active=True)
        if admins.count() <= 1:
            raise AccountsError(_("The organisation needs at least one active administrator."))
    before = _user_state(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    audit_record(organisation=user.organisation, actor=acting_user, action="user.deactivated",
                 target=user, before=before, after=_user_state(user), reason=reason)
    return user


@transaction.atomic
def user_reactivate(*, user: User, acting_user: User, reason: str = "") -> User:
    """Let a deactivated user log in again, if a licence of their type is free."""
    subscription = _lock_subscription(acting_user.organisation_id)
    organisation = _lock_organisation(acting_user.organisation_id)
    user = _lock_user(organisation=organisation, user_id=user.pk)
    if user.is_active:
        raise AccountsError(_("%(email)s is already active.") % {"email": user.email})
    licence_require_free(subscription=subscription, licence_type=user.licence_type)
    before = _user_state(user)
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit_record(organisation=user.organisation, actor=acting_user, action="user.reactivated",
                 target=user, before=before, after=_user_state(user), reason=reason)
    return user


@transaction.atomic
def user_change_licence_type(*, user: User, licence_type: str, acting_user: User) -> User:
    """Move a user to the other licence type; an active user needs a free licence of it."""
    if licence_type not in LicenceType.values:
        raise AccountsError(_("Choose a licence type."))
    subscription = _lock_subscription(acting_user.organisation_id)
    organisation = _lock_organisation(acting_user.organisation_id)
    user = _lock_user(organisation=organisation, user_id=user.pk)
    if user.licence_type == licence_type:
        raise AccountsError(_("%(email)s already has a %(type)s licence.")
                            % {"email": user.email, "type": user.get_licence_type_display()})
    if user.is_active:
        licence_require_free(subscription=subscription, licence_type=licence_type)
    before = _user_state(user)
    user.licence_type = licence_type
    user.save(update_fields=["licence_type"])
    audit_record(organisation=organisation, actor=acting_user, action="user.licence_changed",
                 target=user, before=before, after=_user_state(user))
    return user


@transaction.atomic
def staff_authenticator_set(*, user: User, reason: str) -> TOTPDevice:
    """Give a staff member a new authenticator (a TOTP device) for admin's second factor,
    replacing any they had: a lost phone's codes stop working at once. The caller shows the
    device's `config_url` (otpauth://) to the staff member once; it holds the secret."""
    if not user.is_staff:
        raise AccountsError(_("%(email)s is not support staff.") % {"email": user.email})
    user = User.objects.select_for_update().get(pk=user.pk)
    replaced = TOTPDevice.objects.filter(user=user).delete()[0]
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    audit_record(organisation=None, actor=None, action="staff.authenticator_set", target=user,
                 before={"authenticators": replaced}, after={"authenticators": 1},
                 reason=reason)
    return device
