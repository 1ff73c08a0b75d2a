"""Support staff act in admin: refunds as credit notes on the payment they give back,
credit granted without an invoice, and the permissions of the support actions."""

import django.db.models.deletion
import djmoney.models.fields
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0013_licence_ledger'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='notification',
            options={'ordering': ['-created_at', '-id'], 'permissions': [('support_resend', 'Can send an email again (support)')]},
        ),
        migrations.AlterModelOptions(
            name='payment',
            options={'ordering': ['-created_at', '-id'], 'permissions': [('support_refund', 'Can refund a card payment (support)')]},
        ),
        migrations.AlterModelOptions(
            name='subscription',
            options={'permissions': [('support_extend_trial', 'Can extend a trial (support)'), ('support_unlock', 'Can unlock an account with a new grace end (support)'), ('support_grant_credit', 'Can grant account credit (support)'), ('support_retry_charge', 'Can retry a failed renewal charge (support)'), ('support_change_plan', 'Can change the plan for an organisation (support)')]},
        ),
        migrations.AddField(
            model_name='creditnote',
            name='payment',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='credit_notes', to='billing.payment'),
        ),
        migrations.AddField(
            model_name='creditnote',
            name='processor_refund_id',
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name='payment',
            name='amount_refunded',
            field=djmoney.models.fields.MoneyField(blank=True, decimal_places=2, max_digits=14, null=True),
        ),
        migrations.AddField(
            model_name='payment',
            name='amount_refunded_currency',
            field=djmoney.models.fields.CurrencyField(choices=[('JPY', 'JPY ¥'), ('USD', 'USD $')], default='JPY', editable=False, max_length=3, null=True),
        ),
        migrations.AlterField(
            model_name='creditentry',
            name='invoice',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='credit_entries', to='billing.invoice'),
        ),
        migrations.AlterField(
            model_name='creditentry',
            name='kind',
            field=models.CharField(choices=[('credit_note', 'Credit note for unused time'), ('applied', 'Applied to an invoice'), ('granted', 'Granted by Kanri support')], max_length=12),
        ),
        migrations.AlterField(
            model_name='creditnote',
            name='kind',
            field=models.CharField(choices=[('downgrade', 'Unused time after a downgrade'), ('refund', 'Refund of a card payment')], max_length=20),
        ),
        migrations.AddConstraint(
            model_name='creditnote',
            constraint=models.UniqueConstraint(condition=models.Q(('processor_refund_id', ''), _negated=True), fields=('processor_refund_id',), name='one_credit_note_per_processor_refund'),
        ),
    ]
