"""Support staff look up organisations, their people and their audit trail."""
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from accounts.models import AuditEvent, Organisation, User


class MemberInline(admin.TabularInline):
    model = User
    fields = ["email", "name", "role", "licence_type", "is_active"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


# An organisation's records in billing and api, each a list filtered to it.
RELATED_LISTS = [
    ("billing", "invoice", _("Invoices")), ("billing", "payment", _("Payments")),
    ("billing", "creditnote", _("Credit notes")), ("billing", "creditentry", _("Account credit")),
    ("billing", "quote", _("Quotes")), ("billing", "paymentmethod", _("Cards")),
    ("billing", "licenceledgerentry", _("Licence ledger")),
    ("billing", "notification", _("Emails")), ("api", "apikey", _("API keys")),
    ("api", "usagereport", _("Usage reports")), ("accounts", "auditevent", _("Audit trail")),
]


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ["name", "subscription_status", "subscription_plan", "currency", "language",
                    "created_at", "closed_at"]
    list_filter = ["subscription__status", "currency", "language", "created_at", "closed_at"]
    search_fields = ["name", "users__email", "subscription__processor_customer_id"]
    list_select_related = ["subscription__plan"]
    inlines = [MemberInline]
    # Money follows the subscription: the currency changes only through billing's services.
    readonly_fields = ["currency", "subscription_link", "related_lists"]

    @admin.display(description=_("Status"), ordering="subscription__status")
    def subscription_status(self, obj):
        subscription = getattr(obj, "subscription", None)
        return subscription.get_status_display() if subscription else "—"

    @admin.display(description=_("Plan"), ordering="subscription__plan__rank")
    def subscription_plan(self, obj):
        subscription = getattr(obj, "subscription", None)
        return subscription.plan if subscription else "—"

    @admin.display(description=_("Subscription and support actions"))
    def subscription_link(self, obj):
        subscription = getattr(obj, "subscription", None)
        if subscription is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse(
            "admin:billing_subscription_change", args=[subscription.pk]), subscription)

    @admin.display(description=_("Related lists"))
    def related_lists(self, obj):
        return format_html_join(" · ", '<a href="{}?organisation__id__exact={}">{}</a>', (
            (reverse(f"admin:{app}_{model}_changelist"), obj.pk, label)
            for app, model, label in RELATED_LISTS))


class StaffCreationForm(AdminUserCreationForm):
    """Staff accounts only: organisation users come from sign-up and invitations."""

    class Meta:
        model = User
        fields = ["email"]

    def save(self, commit=True):
        self.instance.is_staff = True
        return super().save(commit=commit)


class KanriUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = StaffCreationForm
    form = KanriUserChangeForm
    ordering = ["email"]
    list_display = ["email", "organisation", "role", "licence_type", "is_active", "is_staff"]
    list_filter = ["role", "licence_type", "is_active", "is_staff", "date_joined"]
    search_fields = ["email", "name", "organisation__name"]
    list_select_related = ["organisation"]
    # Activation and roles change through the audited services, not raw fields.
    readonly_fields = ["organisation", "role", "licence_type", "is_active", "last_login",
                       "date_joined"]
    fieldsets = [
        (None, {"fields": ["email", "name", "password"]}),
        (_("Organisation"), {"fields": ["organisation", "role", "licence_type", "is_active"]}),
        (_("Support staff"), {"fields": ["is_staff", "is_superuser", "groups",
                                         "user_permissions"]}),
        (_("Dates"), {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"],
                             "fields": ["email", "usable_password", "password1", "password2"]})]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Append-only: visible to staff, never edited or deleted."""

    list_display = ["created_at", "organisation", "actor_label", "actor_kind", "action",
                    "target_type", "target_id"]
    list_filter = ["action", "actor_kind", "created_at"]
    search_fields = ["organisation__name", "actor_label", "target_id"]
    list_select_related = ["organisation"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
