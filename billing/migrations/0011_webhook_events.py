# Written by hand: the processor's webhook events, stored raw and processed once.

import store.clock
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0010_credit_notes_and_receipts'),
    ]

    operations = [
        migrations.CreateModel(
            name='WebhookEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event_id', models.CharField(max_length=255, unique=True)),
                ('type', models.CharField(max_length=100)),
                ('payload', models.JSONField(help_text='The event as delivered.')),
                ('received_at', models.DateTimeField(default=store.clock.now)),
                ('processed_at', models.DateTimeField(blank=True, null=True)),
                ('outcome', models.CharField(blank=True, choices=[('applied', 'Applied'), ('unchanged', 'Nothing to change'), ('ignored', 'Ignored'), ('deferred', 'Deferred'), ('failed', 'Failed')], max_length=10)),
                ('detail', models.TextField(blank=True, help_text='What processing found, or the error.')),
            ],
            options={
                'ordering': ['-received_at', '-id'],
            },
        ),
    ]
