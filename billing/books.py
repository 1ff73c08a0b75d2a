"""Do the books balance? The invariants of SPEC.md "The books" that Kanri's own rows can show,
read from a live database: `manage.py check_books` prints what differs and exits 1, and a
database system check (billing.W002) warns like the licence ledger's does.

- Credit: an organisation's credit balance is the sum of its credit ledger, and never negative.
- Invoices: credit applied to an invoice is what its ledger entries spent on it; a voided
  invoice has nothing paid and has given back all the credit it spent; an open one has nothing
  paid by card yet; a paid one collected its total by card and credit, and left uncollected only
  an amount below the processor's minimum charge.
- Refunds: never more than the payment; the refund credit notes of a payment add up to what was
  refunded of it, and so do its recorded refund attempts (Refund rows, one per refund at the
  processor), and a payment is `refunded` exactly when all of it was (a charge that could not
  be applied is refunded whole with no invoice, so with no credit note).
- Licences: active users of a type never exceed the licences of that type (open accounts), and
  each subscription's quantities equal its licence ledger (billing.ledger_checks).

A few queries per rule; the rows are compared in Python. The processor's side
(its charges and refunds against Kanri's records) is not read here: that needs the network.
"""
from dataclasses import dataclass
from decimal import Decimal

from django.core.checks import Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import connections
from django.db.models import Count, Q, Sum

from accounts.models import AuditEvent, LicenceType, User
from billing.ledger_checks import ledger_mismatches
from billing.models import CreditEntry, CreditNote, Invoice, Payment, Refund, Subscription
from store.money import minimum_charge

NOTHING = Decimal(0)


@dataclass(frozen=True)
class Discrepancy:
    rule: str  # credit, invoice, refund, licences
    subject: str  # what it is about, as support would look it up
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.subject}: {self.detail}"


def _credit(using: str) -> list[Discrepancy]:
    ledger = dict(CreditEntry.objects.using(using).values("organisation_id")
                  .annotate(total=Sum("amount")).values_list("organisation_id", "total"))
    found = []
    for row in (Subscription.objects.using(using)
                .values("organisation_id", "organisation__name", "credit_balance",
                        "currency")):
        balance, summed = row["credit_balance"], ledger.get(row["organisation_id"], NOTHING)
        currency = row["currency"]
        subject = f"organisation {row['organisation_id']} ({row['organisation__name']})"
        if balance != summed:
            found.append(Discrepancy("credit", subject, f"balance {balance} {currency}, "
                                                        f"credit ledger sums to {summed}"))
        if balance < 0:
            found.append(Discrepancy("credit", subject, f"negative balance {balance}"))
    return found


def _waived_by_support(using: str) -> set[str]:
    """The invoices support applied without charging (their audit rows say so, with the reason):
    what they did not collect was waived on purpose."""
    return {str(pk) for pk in AuditEvent.objects.using(using).filter(
        action="support.plan_changed", target_type=Invoice._meta.label_lower,
        after__charged=False).values_list("target_id", flat=True)}


def _invoice_problems(row: dict, net_spent: Decimal, waived: set[str]) -> list[str]:
    currency = row["currency"]
    total, credit, paid = row["total"], row["credit_applied"], row["amount_paid"]
    if row["state"] == Invoice.State.VOID:
        return [*([f"void but {paid} {currency} was paid"] if paid else []),
                *([f"void but {net_spent} {currency} of the credit it spent was not given back"]
                  if net_spent else [])]
    problems = []
    if credit != net_spent:
        problems.append(f"credit applied {credit} {currency}, its credit ledger entries spent "
                        f"{net_spent} {currency}")
    if row["state"] == Invoice.State.OPEN and paid:
        problems.append(f"open but {paid} {currency} was paid")
    # A negative total (a downgrade) went to the account as credit instead.
    uncollected = total + row["credit_to_account"] - credit - paid
    if uncollected < 0:
        problems.append(f"total {total} {currency}, but {credit} {currency} credit and {paid} "
                        f"{currency} paid")
    elif (row["state"] == Invoice.State.PAID and uncollected
          and uncollected >= minimum_charge(currency).amount and str(row["pk"]) not in waived):
        problems.append(f"paid, but {uncollected} {currency} of it was neither charged, paid by "
                        "credit nor waived")
    return problems


def _invoices(using: str) -> list[Discrepancy]:
    # Per invoice, the credit its ledger entries spent on it, net of what a void gave back.
    spent = {invoice_id: -net for invoice_id, net in (
        CreditEntry.objects.using(using)
        .filter(invoice__isnull=False,
                kind__in=(CreditEntry.Kind.APPLIED, CreditEntry.Kind.RETURNED))
        .values("invoice_id").annotate(net=Sum("amount")).values_list("invoice_id", "net"))}
    waived = _waived_by_support(using)
    found = []
    for row in Invoice.objects.using(using).values(
            "pk", "number", "state", "currency", "total", "credit_applied", "amount_paid",
            "credit_to_account").iterator(chunk_size=2000):
        net_spent = spent.get(row["pk"], NOTHING)
        found.extend(Discrepancy("invoice", f"invoice {row['number']}", detail)
                     for detail in _invoice_problems(row, net_spent, waived))
    return found


def _refunds(using: str) -> list[Discrepancy]:
    noted = dict(CreditNote.objects.using(using).filter(kind=CreditNote.Kind.REFUND)
                 .values("payment_id").annotate(total=Sum("total"))
                 .values_list("payment_id", "total"))
    # Every refund at the processor has its Refund row, recorded (billing.services.refunds).
    recorded = dict(Refund.objects.using(using).filter(state=Refund.State.SUCCEEDED)
                    .values("payment_id").annotate(total=Sum("amount"))
                    .values_list("payment_id", "total"))
    found = []
    for row in (Payment.objects.using(using)
                .filter(Q(amount_refunded__isnull=False) | Q(state=Payment.State.REFUNDED)
                        | Q(pk__in=list(noted)) | Q(pk__in=list(recorded)))
                .values("pk", "idempotency_key", "state", "amount", "amount_currency",
                        "amount_refunded")):
        subject = f"payment {row['pk']} ({row['idempotency_key']})"
        currency, paid = row["amount_currency"], row["amount"]
        given_back = row["amount_refunded"] if row["amount_refunded"] is not None else (
            paid if row["state"] == Payment.State.REFUNDED else NOTHING)
        if recorded.get(row["pk"], NOTHING) != given_back:
            found.append(Discrepancy("refund", subject, f"{given_back} {currency} refunded, its "
                                                        "refund records say "
                                                        f"{recorded.get(row['pk'], NOTHING)} "
                                                        f"{currency}"))
        if (row["state"] == Payment.State.REFUNDED and row["amount_refunded"] is None
                and row["pk"] not in noted):
            continue  # a charge that could not be applied, refunded whole: nothing invoiced
        refunded, noted_total = row["amount_refunded"] or NOTHING, noted.get(row["pk"], NOTHING)
        if refunded > paid:
            found.append(Discrepancy("refund", subject, f"{refunded} {currency} refunded of "
                                                        f"{paid} {currency} paid"))
        if noted_total != refunded:
            found.append(Discrepancy("refund", subject, f"{refunded} {currency} refunded, its "
                                                        f"credit notes say {noted_total} "
                                                        f"{currency}"))
        if (row["state"] == Payment.State.REFUNDED) != (refunded == paid):
            found.append(Discrepancy("refund", subject, f"state {row['state']} with {refunded} "
                                                        f"{currency} refunded of {paid}"))
    return found


def _licences(using: str) -> list[Discrepancy]:
    active = {(row["organisation_id"], row["licence_type"]): row["n"]
              for row in User.objects.using(using).filter(is_active=True,
                                                            organisation__isnull=False)
              .values("organisation_id", "licence_type").annotate(n=Count("pk"))}
    found = []
    for row in (Subscription.objects.using(using).filter(organisation__closed_at__isnull=True)
                .values("organisation_id", "organisation__name", "regular_licences",
                        "team_licences")):
        for licence_type, held in ((LicenceType.REGULAR, row["regular_licences"]),
                                   (LicenceType.TEAM, row["team_licences"])):
            users = active.get((row["organisation_id"], licence_type), 0)
            if users > held:
                found.append(Discrepancy(
                    "licences", f"organisation {row['organisation_id']} "
                                f"({row['organisation__name']})",
                    f"{users} active {licence_type} users on {held} licences"))
    return found


def books_discrepancies(*, using: str = "default") -> list[Discrepancy]:
    """Everything in the books that does not balance, by rule."""
    ledger = [Discrepancy("ledger", f"subscription {mismatch.subscription_id} "
                                    f"({mismatch.organisation})", str(mismatch).partition(": ")[2])
              for mismatch in ledger_mismatches(using=using)]
    return [*_credit(using), *_invoices(using), *_refunds(using), *_licences(using), *ledger]


@register(Tags.database)
def check_books(app_configs=None, databases=None, **kwargs) -> list[CheckWarning]:
    warnings = []
    for alias in databases or ():
        if CreditNote._meta.db_table not in connections[alias].introspection.table_names():
            continue  # not migrated yet (migrate runs this check before it migrates)
        warnings.extend(CheckWarning(f"The books do not balance: {discrepancy}.",
                                     hint="Run `manage.py check_books` for the whole list.",
                                     obj=f"{alias}: {discrepancy.subject}", id="billing.W002")
                        for discrepancy in books_discrepancies(using=alias)
                        if discrepancy.rule != "ledger")  # billing.W001 warns of those
    return warnings
