"""Support staff see an organisation's API keys (name and last use) and its usage reports in
admin: the "support" group (billing 0015) gets their view permissions, and nothing more."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "support"
CODENAMES = ["view_apikey", "view_usagereport"]


def grant(apps, schema_editor):
    app_config = apps.get_app_config("api")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    group = apps.get_model("auth", "Group").objects.filter(name=GROUP).first()
    if group is not None:
        group.permissions.add(*apps.get_model("auth", "Permission").objects.filter(
            content_type__app_label="api", codename__in=CODENAMES))


def revoke(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=GROUP).first()
    if group is not None:
        group.permissions.remove(*apps.get_model("auth", "Permission").objects.filter(
            content_type__app_label="api", codename__in=CODENAMES))


class Migration(migrations.Migration):
    dependencies = [("api", "0001_initial"), ("billing", "0015_support_group")]
    operations = [migrations.RunPython(grant, revoke)]
