"""Seed the shipped catalog (plans, add-ons, prices); idempotent, so it is safe on any database."""
from django.db import migrations


def seed(apps, schema_editor):
    from store.catalog_seed import seed_catalog

    seed_catalog(apps.get_model("store", "Plan"), apps.get_model("store", "AddOn"),
                 apps.get_model("store", "Price"))


class Migration(migrations.Migration):
    dependencies = [("store", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
