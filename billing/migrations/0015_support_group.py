"""The "support" group: exactly what support staff need in Django admin. They look up
organisations, people, the audit trail and every billing record (view only), and act only
through the support actions (each its own permission); they add, change and delete nothing."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "support"
VIEW = {
    "accounts": ["organisation", "user", "auditevent"],
    "billing": ["subscription", "subscriptionstatuschange", "quote", "invoice", "invoiceline",
                "creditnote", "creditentry", "payment", "paymentmethod", "notification",
                "webhookevent", "licenceledgerentry"],
}
ACTIONS = ["support_extend_trial", "support_unlock", "support_grant_credit",
           "support_retry_charge", "support_change_plan", "support_refund", "support_resend"]


def permissions_wanted():
    wanted = [("billing", codename) for codename in ACTIONS]
    for app_label, models in VIEW.items():
        wanted += [(app_label, f"view_{model}") for model in models]
    return wanted


def create_group(apps, schema_editor):
    # Permissions are made after every migration has run (post_migrate); make them now.
    for app_label in VIEW:
        app_config = apps.get_app_config(app_label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.set([
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
        for app_label, codename in permissions_wanted()])


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0014_support_refunds"),
                    ("accounts", "0004_organisation_language"),
                    ("auth", "0012_alter_user_first_name_max_length"),
                    ("contenttypes", "0002_remove_content_type_name")]
    operations = [migrations.RunPython(create_group, delete_group)]
