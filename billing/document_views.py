"""Invoices and credit notes as PDF downloads, in the reader's language. Open while the
organisation is locked: paying its way out starts from reading what it owes."""
from django.http import HttpResponse
from django.utils.http import content_disposition_header
from django.utils.translation import get_language

from accounts.permissions import org_admin_required
from billing import documents, selectors


def _pdf_response(content: bytes, filename: str) -> HttpResponse:
    return HttpResponse(content, content_type="application/pdf", headers={
        "Content-Disposition": content_disposition_header(as_attachment=True, filename=filename)})


@org_admin_required(while_locked=True)
def invoice_pdf(request, number: str):
    invoice = selectors.invoice_get(organisation=request.user.organisation, number=number)
    return _pdf_response(documents.invoice_pdf(invoice, get_language()),
                         documents.invoice_filename(invoice))


@org_admin_required(while_locked=True)
def credit_note_pdf(request, number: str):
    credit_note = selectors.credit_note_get(organisation=request.user.organisation,
                                            number=number)
    return _pdf_response(documents.credit_note_pdf(credit_note, get_language()),
                         documents.credit_note_filename(credit_note))
