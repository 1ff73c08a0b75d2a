"""Invoices: numbered without gaps, written once from a paid quote, never changed after.

An invoice copies what its quote froze (lines, tax rate, rounding and per-rate tax) and keeps
snapshots of the names it prints: the seller, the buyer, the plan, each line's item. An invoice
that credits the account comes with a credit note, numbered in its own gapless sequence.
"""
from django.conf import settings
from django.db import transaction
from djmoney.money import Money

from accounts.models import Organisation
from billing.models import (
    CreditEntry,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    Notification,
    Payment,
    Quote,
    Subscription,
)
from billing.models.invoices import CreditEntry as Entry
from billing.notifications import Event, notify_all
from store import clock
from store.money import breakdown_to_json, format_money


def _next_number(sequence_name: str, prefix: str) -> str:
    """Take the next number under the sequence's row lock (gapless: documents are never
    deleted)."""
    sequence, _ = InvoiceSequence.objects.select_for_update().get_or_create(name=sequence_name)
    sequence.last += 1
    sequence.save(update_fields=["last"])
    return f"{prefix}-{sequence.last:06d}"


def next_invoice_number() -> str:
    return _next_number("invoice", "INV")


def next_credit_note_number() -> str:
    return _next_number("credit_note", "CN")


def issue_snapshots(*, organisation, currency: str, plan, cycle: str) -> dict:
    """The names an invoice prints, as they read at issue: seller, buyer, plan and cycle, and
    the qualified-invoice registration number (JPY invoices)."""
    return {"seller_name": settings.KANRI_SELLER_NAME, "buyer_name": organisation.name,
            "issuer_registration": settings.KANRI_INVOICE_ISSUER_REGISTRATION
            if currency == "JPY" else "",
            "plan_name": plan.name, "plan_name_ja": plan.name_ja, "cycle": cycle}


@transaction.atomic(savepoint=False)  # its caller's transaction, which an error rolls back whole
def invoice_from_quote(*, quote: Quote, subscription: Subscription, amount_paid: Money,
                       paid_by: str = "") -> Invoice:
    """The finalized, paid invoice for a quote, with the credit it used or created; `paid_by`
    is the processor id of the card payment that paid it ("" when nothing was charged)."""
    organisation = quote.organisation
    invoice = Invoice.objects.create(
        number=next_invoice_number(), organisation=organisation, subscription=subscription,
        quote=quote, state=Invoice.State.PAID, currency=quote.currency, subtotal=quote.subtotal,
        tax_rate=quote.tax_rate, tax_rounding=quote.tax_rounding,
        tax_breakdown=quote.tax_breakdown, tax=quote.tax, total=quote.total,
        credit_applied=quote.credit_applied, amount_paid=amount_paid,
        credit_to_account=quote.credit_to_account, issued_at=clock.now(), paid_by=paid_by,
        **issue_snapshots(organisation=organisation, currency=quote.currency, plan=quote.plan,
                          cycle=quote.cycle))
    lines = quote.lines.select_related("price", "plan", "addon", "credits_line")
    InvoiceLine.objects.bulk_create(InvoiceLine(invoice=invoice, **line.copied_values())
                                    for line in lines)
    if quote.credit_applied.amount:
        CreditEntry.objects.create(organisation=organisation, invoice=invoice,
                                   kind=Entry.Kind.APPLIED, amount=-quote.credit_applied)
    if quote.credit_to_account.amount:
        CreditEntry.objects.create(organisation=organisation, invoice=invoice,
                                   kind=Entry.Kind.CREDIT_NOTE, amount=quote.credit_to_account)
        credit_note_for_invoice(invoice=invoice)
    subscription.credit_balance = (subscription.credit_balance - quote.credit_applied
                                   + quote.credit_to_account)
    return invoice


def credit_note_for_invoice(*, invoice: Invoice) -> CreditNote:
    """The credit note for what an invoice gives back to the account (its total is below zero:
    the unused time credited exceeds what was charged). Per tax rate it credits what the
    invoice's lines net to, so its totals are the invoice's turned positive, and its total is
    the credit to the account. Issued with the invoice, under the invoice's snapshots."""
    taxes = [{"rate": group["rate"], "subtotal": -group["subtotal"], "tax": -group["tax"]}
             for group in invoice.taxes]
    return CreditNote.objects.create(
        number=next_credit_note_number(), organisation_id=invoice.organisation_id,
        invoice=invoice, kind=CreditNote.Kind.DOWNGRADE, currency=invoice.currency,
        subtotal=-invoice.subtotal, tax_breakdown=breakdown_to_json(taxes), tax=-invoice.tax,
        total=invoice.credit_to_account, seller_name=invoice.seller_name,
        buyer_name=invoice.buyer_name, issuer_registration=invoice.issuer_registration,
        issued_at=invoice.issued_at)


def receipt_notify(*, organisation: Organisation, invoice: Invoice, payment: Payment) -> bool:
    """Record the receipt email for a card payment that paid `invoice` (its PDF is attached when
    the email is sent). Call inside the transaction that records the payment as applied: an
    invoice is paid once, under the subscription's lock, so its receipt is always new (and the
    notification's unique key would keep a second one out)."""
    language = organisation.language
    context = {"number": invoice.number, "amount": format_money(payment.amount, language),
               "paid_on": clock.local_date_label(payment.settled_at or clock.now(),
                                                 organisation.time_zone)}
    if invoice.kind == Invoice.Kind.RENEWAL:
        context["period_end"] = clock.local_date_label(invoice.period_end, organisation.time_zone)
    event = Event(organisation.pk, Notification.Kind.RECEIPT, f"receipt:{invoice.number}",
                  context)
    return notify_all([event], new=True) == 1


def payment_by_credit_record(*, invoice: Invoice) -> Payment | None:
    """An invoice that account credit paid with no card charge still has its line in 決済の履歴:
    a succeeded Payment of the credit used, marked paid with credit (nothing reached the
    processor). Once per invoice; none when no credit was used."""
    if not invoice.credit_applied.amount:
        return None
    payment, _created = Payment.objects.get_or_create(
        idempotency_key=f"invoice:{invoice.pk}:credit",
        defaults={"organisation_id": invoice.organisation_id, "invoice": invoice,
                  "quote_id": invoice.quote_id, "amount": invoice.credit_applied,
                  "paid_with": Payment.Source.CREDIT, "state": Payment.State.SUCCEEDED,
                  "created_at": invoice.issued_at, "settled_at": clock.now()})
    return payment
