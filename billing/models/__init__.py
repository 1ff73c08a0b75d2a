"""Billing's nouns, one module each."""
from billing.models.credit_notes import CreditNote
from billing.models.invoices import CreditEntry, Invoice, InvoiceLine, InvoiceSequence
from billing.models.ledger import LedgerItem, LicenceLedgerEntry
from billing.models.notifications import Notification
from billing.models.payments import Payment, PaymentMethod
from billing.models.quotes import Quote, QuoteLine
from billing.models.refunds import Refund
from billing.models.subscriptions import (
    Status,
    Subscription,
    SubscriptionStatusChange,
    TrialUse,
)
from billing.models.webhooks import WebhookEvent

__all__ = ["CreditEntry", "CreditNote", "Invoice", "InvoiceLine", "InvoiceSequence",
           "LedgerItem", "LicenceLedgerEntry", "Notification", "Payment", "PaymentMethod",
           "Quote", "QuoteLine", "Refund", "Status", "Subscription", "SubscriptionStatusChange",
           "TrialUse", "WebhookEvent"]
