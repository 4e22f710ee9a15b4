# The audit trail moves from `execution` to `accounts` (apps depend one way). The table and its
# rows stay where they are: this changes Django's model state only.
import django.core.serializers.json
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_account_reconcile_lease_until'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ExecutionEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(db_index=True, max_length=64)),
                        ('subject_type', models.CharField(blank=True, default='', max_length=32)),
                        ('subject_id', models.BigIntegerField(blank=True, null=True)),
                        ('from_status', models.CharField(blank=True, default='', max_length=16)),
                        ('to_status', models.CharField(blank=True, default='', max_length=16)),
                        ('message', models.TextField(blank=True, default='')),
                        ('data', models.JSONField(blank=True, default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('account', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='events', to='accounts.account')),
                    ],
                    options={
                        'db_table': 'execution_executionevent',
                        'ordering': ['-created_at', '-id'],
                        'indexes': [models.Index(fields=['subject_type', 'subject_id'], name='event_subject')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
