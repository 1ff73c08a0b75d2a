"""Beat schedules for the subscription's life (editable in admin): each sweep by name."""
import json

from django.db import migrations

TASK = "billing.tasks.run_sweep"
SCHEDULES = [  # name, minutes between runs, what it does
    ("trial_reminders", 60, "Remind admins a few days before a trial ends"),
    ("trial_ends", 15, "Return ended trials to Free"),
    ("renewals", 15, "Invoice and charge periods that have ended"),
    ("retries", 60, "Retry failed renewals on the dunning days"),
    ("locks", 60, "Lock accounts whose grace period is over"),
    ("moves_to_free", 360, "Move accounts locked for two months to Free"),
]


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, minutes, description in SCHEDULES:
        every, _ = IntervalSchedule.objects.get_or_create(every=minutes, period="minutes")
        PeriodicTask.objects.get_or_create(
            name=f"Billing: {name}",
            defaults={"task": TASK, "interval": every, "args": json.dumps([name]),
                      "description": description, "enabled": True})


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_dunning_and_notifications")]

    operations = [migrations.RunPython(schedule, unschedule)]
