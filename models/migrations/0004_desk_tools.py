"""Desk tools (issue 20): saved replies, and merging a ticket into another (`merged_into`, status `merged`)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.statuses import TicketStatus
from tortoise.fields.base import OnDelete
from tortoise import fields


class DescribeStatus(ops.AlterField):
    """The new `merged` status changes only the field's description (the column is a plain varchar): the
    state learns it, the database is not touched (on SQLite an AlterField would remake the ticket table,
    see 0002's docstring)."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None

    async def database_backward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None


class Migration(migrations.Migration):
    dependencies = [('models', '0003_search')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SavedReply',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('text', fields.TextField(unique=False)),
                ('created_by', fields.ForeignKeyField('models.StaffMember', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='saved_replies', on_delete=OnDelete.SET_NULL)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'saved_reply', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A staff reply kept under a name (/savereply), its text with {variables} (models/saved_replies.py).'},
            bases=['Model'],
        ),
        DescribeStatus(
            model_name='Ticket',
            name='status',
            field=fields.CharEnumField(default=TicketStatus.NEW, description='NEW: new\nACCEPTED: accepted\nREFUSED: refused\nANSWERED: answered\nCLOSED: closed\nMERGED: merged', enum_type=TicketStatus, max_length=16),
        ),
        ops.AddField(
            model_name='Ticket',
            name='merged_into',
            field=fields.ForeignKeyField('models.Ticket', source_field='merged_into_id', null=True, db_constraint=True, to_field='id', related_name='merged', on_delete=OnDelete.SET_NULL),
        ),
    ]
