"""Organisations created before billing existed start on Free, like new ones."""
from django.db import migrations


def create(apps, schema_editor):
    Organisation = apps.get_model("accounts", "Organisation")
    Subscription = apps.get_model("billing", "Subscription")
    Plan = apps.get_model("store", "Plan")
    free = Plan.objects.filter(code="free").first()
    if free is None:
        return
    for organisation in Organisation.objects.filter(subscription__isnull=True):
        Subscription.objects.create(
            organisation=organisation, plan=free, currency=organisation.currency,
            regular_licences=free.max_users or 1, status="free", credit_balance=0,
            credit_balance_currency=organisation.currency)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial"), ("store", "0002_seed_catalog"),
                    ("accounts", "0002_organisation_record_count_and_more")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
