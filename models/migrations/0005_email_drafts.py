"""Emails queued as drafts (issue 20's acknowledgement): `email_outbox.draft`, what the email will say while
its `content` is still empty; the sender composes it when it sends it (mail/drafts.py). A nullable column:
added in place on both databases, existing rows keep their composed bytes."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0004_desk_tools')]

    initial = False

    operations = [
        ops.AddField(
            model_name='EmailOutbox',
            name='draft',
            field=fields.JSONField(null=True),
        ),
    ]
