"""Unsent notifications found cheaply, and the sweep that sends what no task did on beat."""
import json

from django.db import migrations, models

TASK = "billing.tasks.run_sweep"
NAME = "Billing: unsent_emails"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=NAME, defaults={"task": TASK, "interval": every, "args": json.dumps(["unsent_emails"]),
                             "description": "Send emails recorded but never sent",
                             "enabled": True})


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0007_schedule_lifecycle_sweeps"),
                    ("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [
        migrations.AddIndex(
            model_name="notification",
            index=models.Index(condition=models.Q(("sent_at", None)), fields=["created_at"],
                               name="notification_unsent"),
        ),
        migrations.RunPython(schedule, unschedule),
    ]
