"""Support staff look up subscriptions, quotes, invoices and payments here. Read-only: changes go
through the audited services, as the support actions on the change pages (billing.admin_support).
Every list finds a case by organisation name or an admin's email, filters by status and dates,
and costs the same queries however many rows it shows (list_select_related covers each column).
"""
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from billing.admin_support import (
    NOTIFICATION_ACTIONS,
    PAYMENT_ACTIONS,
    SUBSCRIPTION_ACTIONS,
    SupportActionsMixin,
)
from billing.models import (
    CreditEntry,
    CreditNote,
    Invoice,
    InvoiceLine,
    LicenceLedgerEntry,
    Notification,
    Payment,
    PaymentMethod,
    Quote,
    QuoteLine,
    Subscription,
    SubscriptionStatusChange,
    WebhookEvent,
)

# An organisation's administrators and members: support is often given only an email.
MEMBER_EMAIL = "organisation__users__email"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True
    # Foreign keys shown in the rows, fetched with them rather than once per row.
    select_related: list[str] = []

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related(*self.select_related)


class StatusChangeInline(ReadOnlyInline):
    model = SubscriptionStatusChange
    fields = ["created_at", "from_status", "to_status", "actor", "actor_kind", "reason"]
    select_related = ["actor"]
    show_change_link = False


@admin.register(Subscription)
class SubscriptionAdmin(SupportActionsMixin, ReadOnlyAdmin):
    support_actions = SUBSCRIPTION_ACTIONS
    list_display = ["organisation", "plan", "cycle", "status", "regular_licences",
                    "team_licences", "storage_units", "current_period_end", "credit_balance"]
    list_filter = ["status", "plan", "cycle", "currency", "current_period_end", "trial_ends_at",
                   "grace_ends_at", "locked_at"]
    search_fields = ["organisation__name", MEMBER_EMAIL, "processor_customer_id"]
    list_select_related = ["organisation", "plan"]
    inlines = [StatusChangeInline]


@admin.register(SubscriptionStatusChange)
class SubscriptionStatusChangeAdmin(ReadOnlyAdmin):
    """Append-only: every status move of every subscription, e.g. "who was locked yesterday"."""

    list_display = ["created_at", "organisation", "from_status", "to_status", "actor_kind",
                    "actor", "reason"]
    list_filter = ["to_status", "from_status", "actor_kind", "created_at"]
    search_fields = ["subscription__organisation__name", "subscription__processor_customer_id",
                     "reason"]
    list_select_related = ["subscription__organisation", "actor"]

    @admin.display(description=_("organisation"), ordering="subscription__organisation__name")
    def organisation(self, obj):
        return obj.subscription.organisation


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = ["kind", "plan", "addon", "quantity", "unit_amount", "fraction", "amount",
              "period_start", "period_end"]
    select_related = ["plan", "addon"]
    show_change_link = False


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = ["created_at", "idempotency_key", "processor_id", "amount", "state",
              "failure_reason"]


class CreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fk_name = "invoice"
    fields = ["number", "issued_at", "kind", "total", "payment"]
    select_related = ["payment"]


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["number", "organisation", "kind", "issued_at", "total", "amount_paid",
                    "state", "paid_at"]
    list_filter = ["state", "kind", "currency", "issued_at", "paid_at"]
    search_fields = ["number", "organisation__name", MEMBER_EMAIL,
                     "subscription__processor_customer_id", "payments__processor_id"]
    list_select_related = ["organisation"]
    inlines = [InvoiceLineInline, PaymentInline, CreditNoteInline]


class RefundInline(CreditNoteInline):
    fk_name = "payment"
    fields = ["number", "issued_at", "total", "processor_refund_id"]
    select_related = []


@admin.register(Payment)
class PaymentAdmin(SupportActionsMixin, ReadOnlyAdmin):
    support_actions = PAYMENT_ACTIONS
    list_display = ["created_at", "organisation", "invoice", "amount", "paid_with", "state",
                    "amount_refunded", "processor_id", "failure_reason"]
    list_filter = ["state", "paid_with", "created_at", "settled_at"]
    search_fields = ["organisation__name", MEMBER_EMAIL, "processor_id", "idempotency_key",
                     "invoice__number", "refund_id"]
    list_select_related = ["organisation", "invoice"]
    inlines = [RefundInline]


class QuoteLineInline(ReadOnlyInline):
    model = QuoteLine
    fields = ["kind", "plan", "addon", "quantity", "unit_amount", "fraction", "amount",
              "period_start", "period_end"]
    select_related = ["plan", "addon"]
    show_change_link = False


@admin.register(Quote)
class QuoteAdmin(ReadOnlyAdmin):
    list_display = ["id", "organisation", "from_plan", "plan", "amount_due", "state",
                    "created_at", "expires_at"]
    list_filter = ["state", "cycle", "created_at", "expires_at"]
    search_fields = ["id", "organisation__name", MEMBER_EMAIL]
    list_select_related = ["organisation", "from_plan", "plan"]
    inlines = [QuoteLineInline]


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    """Cards as the processor describes them: brand, last 4 digits and expiry, nothing else."""

    list_display = ["organisation", "brand", "last4", "exp_month", "exp_year", "created_at"]
    list_filter = ["brand", "exp_year", "created_at"]
    search_fields = ["organisation__name", MEMBER_EMAIL, "last4"]
    list_select_related = ["organisation"]
    fields = ["organisation", "brand", "last4", "exp_month", "exp_year", "created_at"]


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organisation", "kind", "amount", "invoice"]
    list_filter = ["kind", "created_at"]
    search_fields = ["organisation__name", MEMBER_EMAIL, "invoice__number"]
    list_select_related = ["organisation", "invoice"]


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ["number", "issued_at", "organisation", "kind", "total", "invoice",
                    "payment"]
    list_filter = ["kind", "issued_at"]
    search_fields = ["number", "organisation__name", MEMBER_EMAIL, "invoice__number",
                     "payment__processor_id", "processor_refund_id"]
    list_select_related = ["organisation", "invoice", "payment"]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "type", "event_id", "outcome", "processed_at"]
    list_filter = ["outcome", "type", "received_at", "processed_at"]
    search_fields = ["event_id", "detail"]


@admin.register(LicenceLedgerEntry)
class LicenceLedgerEntryAdmin(ReadOnlyAdmin):
    """Append-only: every change of purchased licences and storage, and what caused it."""

    list_display = ["created_at", "organisation", "item", "delta", "quantity_after",
                    "actor_kind", "actor", "quote", "invoice", "reason"]
    list_filter = ["item", "actor_kind", "created_at"]
    search_fields = ["organisation__name", "invoice__number"]
    list_select_related = ["organisation", "actor", "quote", "invoice"]


@admin.register(Notification)
class NotificationAdmin(SupportActionsMixin, ReadOnlyAdmin):
    """Every email recorded: to whom, when sent; support may send one again."""

    support_actions = NOTIFICATION_ACTIONS
    list_display = ["created_at", "organisation", "kind", "recipients", "sent_at"]
    list_filter = ["kind", "created_at", "sent_at"]
    search_fields = ["organisation__name", "key", "recipients"]
    list_select_related = ["organisation"]
