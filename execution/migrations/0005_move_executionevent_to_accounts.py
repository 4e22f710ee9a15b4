# The audit trail moves to `accounts` (see accounts 0004): Django's state forgets the model
# here; the table `execution_executionevent` and its rows are untouched.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_executionevent'),
        ('execution', '0004_reconciliationrun_reconciliationitem_and_more'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ExecutionEvent')],
            database_operations=[],
        ),
    ]
