"""Invoices: numbered without gaps, written once from a paid quote, never changed after.

An invoice copies what its quote froze (lines, tax rate, rounding and per-rate tax) and keeps
snapshots of the names it prints: the seller, the buyer, the plan, each line's item. An invoice
that credits the account comes with a credit note, numbered in its own gapless sequence.
"""
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
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
from store.money import breakdown_to_json, format_money, zero


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


def invoice_credit_apply(*, invoice: Invoice, subscription: Subscription) -> Money:
    """Pay what the account credit can of an open invoice, in whole or in part (SPEC "Partial
    credit": the card is charged only the rest, since a charge asks for total − credit
    applied). Returns the credit spent, zero when there is none or nothing is owed. The caller
    holds the subscription's lock and the invoice's row, and saves the subscription."""
    owed = invoice.total - invoice.credit_applied
    spent = min(subscription.credit_balance, owed)
    if invoice.state != Invoice.State.OPEN or spent.amount <= 0:
        return zero(invoice.currency)
    CreditEntry.objects.create(organisation_id=invoice.organisation_id, invoice=invoice,
                               kind=Entry.Kind.APPLIED, amount=-spent)
    invoice.credit_applied += spent
    invoice.save(update_fields=["credit_applied"])
    subscription.credit_balance -= spent
    return spent


def invoices_void(*, invoice_ids: list[int]) -> dict[int, Money]:
    """Void the open invoices among `invoice_ids` (kept, never deleted) and give back the
    account credit each spent (SPEC "The books" 2): a RETURNED credit entry pointing at the
    invoice, so a void invoice's credit entries net to nothing. Returns the credit given back
    per subscription id; the caller holds those subscriptions' locks and adds it to their
    balances. A constant number of statements, however many invoices (a sweep's batch)."""
    voided = list(Invoice.objects.filter(pk__in=invoice_ids, state=Invoice.State.OPEN)
                  .select_for_update().values_list("pk", flat=True))
    if not voided:
        return {}
    Invoice.objects.filter(pk__in=voided).update(state=Invoice.State.VOID,
                                                 voided_at=clock.now())
    # What each spent, read from the ledger (whichever way credit paid it), less any given back.
    spent = list(CreditEntry.objects.filter(invoice_id__in=voided,
                                            kind__in=[Entry.Kind.APPLIED, Entry.Kind.RETURNED])
                 .values("invoice_id", "organisation_id", "invoice__subscription_id",
                         "amount_currency").annotate(net=Sum("amount")).filter(net__lt=0))
    returned: dict[int, Money] = {}
    entries = []
    for row in spent:
        amount = Money(-row["net"], row["amount_currency"])
        entries.append(CreditEntry(organisation_id=row["organisation_id"],
                                   invoice_id=row["invoice_id"], kind=Entry.Kind.RETURNED,
                                   amount=amount))
        subscription_id = row["invoice__subscription_id"]
        returned[subscription_id] = (returned[subscription_id] + amount
                                     if subscription_id in returned else amount)
    CreditEntry.objects.bulk_create(entries)
    return returned


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
