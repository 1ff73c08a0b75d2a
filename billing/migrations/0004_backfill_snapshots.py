"""Fill the snapshots and tax fields added in 0003 on rows written before it."""
from django.conf import settings
from django.db import migrations


def backfill(apps, schema_editor):
    Invoice = apps.get_model("billing", "Invoice")
    Subscription = apps.get_model("billing", "Subscription")
    for model_name in ("QuoteLine", "InvoiceLine"):
        for line in apps.get_model("billing", model_name).objects.filter(item_name=""):
            item = line.plan or line.addon
            line.item_name, line.item_name_ja = item.name, item.name_ja
            line.save(update_fields=["item_name", "item_name_ja"])
    for invoice in Invoice.objects.filter(buyer_name=""):
        plan = invoice.quote.plan if invoice.quote_id else invoice.subscription.plan
        invoice.buyer_name = invoice.organisation.name
        invoice.seller_name = settings.KANRI_SELLER_NAME
        invoice.plan_name, invoice.plan_name_ja = plan.name, plan.name_ja
        invoice.tax_breakdown = [{"rate": str(invoice.tax_rate),
                                  "subtotal": str(invoice.subtotal.amount),
                                  "tax": str(invoice.tax.amount)}]
        invoice.save(update_fields=["buyer_name", "seller_name", "plan_name", "plan_name_ja",
                                    "tax_breakdown"])
    for subscription in Subscription.objects.filter(status="active", paid_invoice=None):
        subscription.billing_anchor = subscription.current_period_start
        subscription.paid_invoice = (Invoice.objects.filter(subscription=subscription)
                                     .order_by("-issued_at", "-id").first())
        subscription.save(update_fields=["billing_anchor", "paid_invoice"])


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_snapshots_tax_per_quote_anchors_retention")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
