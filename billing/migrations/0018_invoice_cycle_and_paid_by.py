"""Invoices keep the cycle they were issued for and the processor id of the card payment that
paid them (what the payment history and the details page print); existing invoices get both
from their quote, lines and payments, as the pages read them before. Idempotent."""
from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def backfill(apps, schema_editor):
    Invoice = apps.get_model("billing", "Invoice")
    InvoiceLine = apps.get_model("billing", "InvoiceLine")
    Payment = apps.get_model("billing", "Payment")
    Quote = apps.get_model("billing", "Quote")
    paid_by = (Payment.objects.filter(invoice=OuterRef("pk"), state="succeeded")
               .exclude(processor_id="").order_by("-pk").values("processor_id")[:1])
    Invoice.objects.filter(state="paid", paid_by="").update(
        paid_by=Coalesce(Subquery(paid_by), Value("")))
    quote_cycle = Quote.objects.filter(pk=OuterRef("quote_id")).values("cycle")[:1]
    Invoice.objects.filter(cycle="", quote__isnull=False).update(cycle=Subquery(quote_cycle))
    line_cycle = (InvoiceLine.objects.filter(invoice=OuterRef("pk"), plan__isnull=False)
                  .order_by("pk").values("price__cycle")[:1])
    Invoice.objects.filter(cycle="").update(cycle=Coalesce(Subquery(line_cycle), Value("")))


class Migration(migrations.Migration):
    dependencies = [("billing", "0017_refund_email")]

    operations = [
        migrations.AddField(
            model_name="invoice", name="cycle",
            field=models.CharField(blank=True, choices=[("monthly", "Monthly"),
                                                        ("yearly", "Yearly")], max_length=10)),
        migrations.AddField(model_name="invoice", name="paid_by",
                            field=models.CharField(blank=True, max_length=64)),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
