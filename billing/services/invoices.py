"""Invoices: numbered without gaps, written once from a paid quote, never changed after.

An invoice copies what its quote froze (lines, tax rate, rounding and per-rate tax) and keeps
snapshots of the names it prints: the seller, the buyer, the plan, each line's item.
"""
from django.conf import settings
from django.db import transaction
from djmoney.money import Money

from billing.models import CreditEntry, Invoice, InvoiceLine, InvoiceSequence, Quote, Subscription
from billing.models.invoices import CreditEntry as Entry
from store import clock


def next_invoice_number() -> str:
    """Take the next number under the sequence's row lock (gapless: invoices are never deleted)."""
    sequence, _ = InvoiceSequence.objects.select_for_update().get_or_create(name="invoice")
    sequence.last += 1
    sequence.save(update_fields=["last"])
    return f"INV-{sequence.last:06d}"


def issue_snapshots(*, organisation, currency: str, plan) -> dict:
    """The names an invoice prints, as they read at issue: seller, buyer, plan, and the
    qualified-invoice registration number (JPY invoices)."""
    return {"seller_name": settings.KANRI_SELLER_NAME, "buyer_name": organisation.name,
            "issuer_registration": settings.KANRI_INVOICE_ISSUER_REGISTRATION
            if currency == "JPY" else "",
            "plan_name": plan.name, "plan_name_ja": plan.name_ja}


@transaction.atomic
def invoice_from_quote(*, quote: Quote, subscription: Subscription, amount_paid: Money) -> Invoice:
    """The finalized, paid invoice for a quote, with the credit it used or created."""
    organisation = quote.organisation
    invoice = Invoice.objects.create(
        number=next_invoice_number(), organisation=organisation, subscription=subscription,
        quote=quote, state=Invoice.State.PAID, currency=quote.currency, subtotal=quote.subtotal,
        tax_rate=quote.tax_rate, tax_rounding=quote.tax_rounding,
        tax_breakdown=quote.tax_breakdown, tax=quote.tax, total=quote.total,
        credit_applied=quote.credit_applied, amount_paid=amount_paid,
        credit_to_account=quote.credit_to_account, issued_at=clock.now(),
        **issue_snapshots(organisation=organisation, currency=quote.currency, plan=quote.plan))
    InvoiceLine.objects.bulk_create(InvoiceLine(invoice=invoice, **line.copied_values())
                                    for line in quote.lines.all())
    if quote.credit_applied.amount:
        CreditEntry.objects.create(organisation=organisation, invoice=invoice,
                                   kind=Entry.Kind.APPLIED, amount=-quote.credit_applied)
    if quote.credit_to_account.amount:
        CreditEntry.objects.create(organisation=organisation, invoice=invoice,
                                   kind=Entry.Kind.CREDIT_NOTE, amount=quote.credit_to_account)
    subscription.credit_balance = (subscription.credit_balance - quote.credit_applied
                                   + quote.credit_to_account)
    return invoice
