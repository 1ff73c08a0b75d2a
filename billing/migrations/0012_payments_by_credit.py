"""Invoices that account credit paid before payments by credit were recorded get their line in
the payment history: a succeeded Payment of the credit used, paid with credit. Idempotent."""
from django.db import migrations


def record(apps, schema_editor):
    Invoice = apps.get_model("billing", "Invoice")
    Payment = apps.get_model("billing", "Payment")
    paid_by_card = Payment.objects.filter(state="succeeded", paid_with="card").values("invoice")
    for invoice in (Invoice.objects.filter(state="paid", credit_applied__gt=0)
                    .exclude(pk__in=paid_by_card).iterator()):
        Payment.objects.get_or_create(
            idempotency_key=f"invoice:{invoice.pk}:credit",
            defaults={"organisation_id": invoice.organisation_id, "invoice_id": invoice.pk,
                      "quote_id": invoice.quote_id, "amount": invoice.credit_applied,
                      "paid_with": "credit",
                      "state": "succeeded", "created_at": invoice.issued_at,
                      "settled_at": invoice.paid_at or invoice.issued_at})


class Migration(migrations.Migration):
    dependencies = [("billing", "0011_webhook_events")]

    operations = [migrations.RunPython(record, migrations.RunPython.noop)]
