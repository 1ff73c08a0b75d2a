"""Support staff look up subscriptions, quotes, invoices and payments here. Read-only: changes go
through the audited services, as the support actions on the change pages (billing.admin_support).
"""
from django.contrib import admin

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
    Subscription,
    SubscriptionStatusChange,
    WebhookEvent,
)


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

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class StatusChangeInline(ReadOnlyInline):
    model = SubscriptionStatusChange
    fields = ["created_at", "from_status", "to_status", "actor", "actor_kind", "reason"]


@admin.register(Subscription)
class SubscriptionAdmin(SupportActionsMixin, ReadOnlyAdmin):
    support_actions = SUBSCRIPTION_ACTIONS
    list_display = ["organisation", "plan", "cycle", "status", "regular_licences",
                    "team_licences", "storage_units", "current_period_end", "credit_balance"]
    list_filter = ["status", "plan", "cycle", "currency"]
    search_fields = ["organisation__name", "processor_customer_id"]
    list_select_related = ["organisation", "plan"]
    inlines = [StatusChangeInline]


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = ["kind", "plan", "addon", "quantity", "unit_amount", "fraction", "amount",
              "period_start", "period_end"]


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = ["created_at", "idempotency_key", "processor_id", "amount", "state",
              "failure_reason"]


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["number", "organisation", "issued_at", "total", "amount_paid", "state"]
    search_fields = ["number", "organisation__name"]
    list_select_related = ["organisation"]
    inlines = [InvoiceLineInline, PaymentInline]


@admin.register(Payment)
class PaymentAdmin(SupportActionsMixin, ReadOnlyAdmin):
    support_actions = PAYMENT_ACTIONS
    list_display = ["created_at", "organisation", "amount", "paid_with", "state",
                    "amount_refunded", "processor_id", "failure_reason"]
    list_filter = ["state"]
    search_fields = ["organisation__name", "processor_id", "idempotency_key"]
    list_select_related = ["organisation"]


@admin.register(Quote)
class QuoteAdmin(ReadOnlyAdmin):
    list_display = ["id", "organisation", "from_plan", "plan", "amount_due", "state",
                    "created_at", "expires_at"]
    list_filter = ["state"]
    search_fields = ["id", "organisation__name"]
    list_select_related = ["organisation", "from_plan", "plan"]


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ["organisation", "brand", "last4", "exp_month", "exp_year", "created_at"]
    search_fields = ["organisation__name", "processor_id"]


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organisation", "kind", "amount", "invoice"]
    list_filter = ["kind"]
    search_fields = ["organisation__name", "invoice__number"]


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ["number", "issued_at", "organisation", "kind", "total", "invoice",
                    "payment"]
    list_filter = ["kind"]
    search_fields = ["number", "organisation__name", "invoice__number"]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "type", "event_id", "outcome", "processed_at"]
    list_filter = ["outcome", "type"]
    search_fields = ["event_id", "detail"]


@admin.register(LicenceLedgerEntry)
class LicenceLedgerEntryAdmin(ReadOnlyAdmin):
    """Append-only: every change of purchased licences and storage, and what caused it."""

    list_display = ["created_at", "organisation", "item", "delta", "quantity_after",
                    "actor_kind", "actor", "quote", "invoice", "reason"]
    list_filter = ["item", "created_at"]
    search_fields = ["organisation__name"]
    list_select_related = ["organisation", "actor", "invoice"]


@admin.register(Notification)
class NotificationAdmin(SupportActionsMixin, ReadOnlyAdmin):
    """Every email recorded: to whom, when sent; support may send one again."""

    support_actions = NOTIFICATION_ACTIONS
    list_display = ["created_at", "organisation", "kind", "recipients", "sent_at"]
    list_filter = ["kind", "created_at", "sent_at"]
    search_fields = ["organisation__name", "key"]
    list_select_related = ["organisation"]
