"""Move the raw mail bytes out of `raw_mail` into `raw_mail_content` (same id, the blob last).

Hand-written rather than generated, for two reasons:
- tortoise would create `raw_mail_content` without a foreign key to `raw_mail` (the model has a plain
  `id`); the table is written here with one, and on SQLite with `INTEGER PRIMARY KEY` so the id is the
  rowid (one b-tree, and `blobopen` addresses the row by it);
- tortoise's SQLite `RemoveField` remakes the table (create new, copy, DROP, rename): with foreign keys on,
  that DROP deletes every row first, which fires `message.raw_mail_id ON DELETE SET NULL` and the new
  `ON DELETE CASCADE`, and the remade table loses its indexes and unique constraint. `ALTER TABLE ... DROP
  COLUMN` (SQLite >= 3.35, PostgreSQL) drops the plain column in place instead.
The migration runs in one transaction (tortoise's default), so the copy and the drop commit together.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


def _blob_type(state_editor) -> str:
    return "BLOB" if state_editor.client.capabilities.dialect == "sqlite" else "BYTEA"


class CreateContentTable(ops.CreateModel):
    """CreateModel whose table is written by hand: with the foreign key to raw_mail."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if not state_editor:
            return
        sql = (
            'CREATE TABLE "raw_mail_content" ('
            '"id" INTEGER NOT NULL PRIMARY KEY REFERENCES "raw_mail" ("id") ON DELETE CASCADE, '
            f'"content" {_blob_type(state_editor)} NOT NULL)'
        )
        await ops.RunSQL(sql).database_forward(app_label, old_state, new_state, state_editor)

    async def database_backward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if not state_editor:
            return
        await ops.RunSQL('DROP TABLE "raw_mail_content"').database_forward(
            app_label, old_state, new_state, state_editor
        )


class DropColumn(ops.RemoveField):
    """RemoveField with `ALTER TABLE ... DROP COLUMN` on every database (see the module docstring)."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if not state_editor:
            return
        await ops.RunSQL('ALTER TABLE "raw_mail" DROP COLUMN "content"').database_forward(
            app_label, old_state, new_state, state_editor
        )

    async def database_backward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if not state_editor:
            return
        # Nullable on the way back: the rows get their bytes from the reverse copy right after.
        sql = f'ALTER TABLE "raw_mail" ADD COLUMN "content" {_blob_type(state_editor)}'
        await ops.RunSQL(sql).database_forward(app_label, old_state, new_state, state_editor)


class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        CreateContentTable(
            name='RawMailContent',
            fields=[
                ('id', fields.IntField(generated=False, primary_key=True, unique=True, db_index=True)),
                ('content', fields.BinaryField()),
            ],
            options={'table': 'raw_mail_content', 'app': 'models', 'pk_attr': 'id', 'table_description': "The bytes of one raw mail, keyed by its id."},
            bases=['Model'],
        ),
        ops.RunSQL(
            'INSERT INTO "raw_mail_content" ("id", "content") SELECT "id", "content" FROM "raw_mail"',
            reverse_sql=(
                'UPDATE "raw_mail" SET "content" = '
                '(SELECT c."content" FROM "raw_mail_content" c WHERE c."id" = "raw_mail"."id")'
            ),
        ),
        DropColumn(model_name='RawMail', name='content'),
    ]
