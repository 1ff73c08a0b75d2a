"""Invoices and credit notes as PDF files, in a reader's language, on the organisation's clock.

The PDF prints what the document stored when it was issued (snapshots, lines, per-rate tax), never
the live catalog or organisation. HTML from templates/billing/pdf/, laid out by WeasyPrint; the
Japanese font is the system's IPA Gothic (fonts-ipafont-gothic), named in the template's CSS.
"""
from django.template.loader import render_to_string
from django.utils import timezone, translation

from billing.models import CreditNote, Invoice
from billing.selectors import invoice_story


def invoice_filename(invoice: Invoice) -> str:
    return f"invoice-{invoice.number}.pdf"


def credit_note_filename(credit_note: CreditNote) -> str:
    return f"credit-note-{credit_note.number}.pdf"


def invoice_pdf(invoice: Invoice, language: str) -> bytes:
    """The invoice as issued, with how it was settled and the credit notes it gave rise to
    (billing.selectors.invoice_story, the same statements as the invoice page)."""
    return _pdf("billing/pdf/invoice.html", {
        "invoice": invoice,
        "lines": invoice.lines.all(),
        "story": invoice_story(invoice),
    }, time_zone=invoice.organisation.time_zone, language=language)


def credit_note_pdf(credit_note: CreditNote, language: str) -> bytes:
    """The credit note, with the lines of the invoice it credits (that invoice never changes),
    and where the money went: back to the card, or to the account's credit."""
    statement = next((s for s in invoice_story(credit_note.invoice).statements
                      if s.number == credit_note.number), None)
    return _pdf("billing/pdf/credit_note.html", {
        "credit_note": credit_note,
        "invoice": credit_note.invoice,
        "lines": credit_note.invoice.lines.all(),
        "statement": statement,
    }, time_zone=credit_note.organisation.time_zone, language=language)


def _pdf(template: str, context: dict, *, time_zone: str, language: str) -> bytes:
    # Imported here: WeasyPrint takes most of a second to import, and only documents need it
    # (not every process that imports billing, e.g. the email task's callers).
    from weasyprint import HTML

    with translation.override(language), timezone.override(time_zone):
        html = render_to_string(template, {**context, "language": language})
    return HTML(string=html).write_pdf()
