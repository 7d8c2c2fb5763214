"""The ticket search index (models/search.py), and every existing message in it.

Hand-written: the index is not a tortoise model, and each database has its own kind.
- SQLite: a contentless FTS5 table, its rowid the message id, over the lemmatised terms that
  models/search_terms.py makes (the tokenizer keeps the characters of codes and addresses inside a token,
  `TOKEN_CHARS`; diacritics are kept, "й" is not "и"). Contentless: the terms are not stored twice.
  Message ids are AUTOINCREMENT, never reused, so the row of a deleted message (the only one deleted is
  an unsent refusal email, never indexed) can never name another message.
- PostgreSQL: `search_doc` (message id, ticket id, a `tsvector` of the `russian` configuration) with a
  GIN index; a message or ticket deleted takes its rows with it.
The existing messages are indexed in the same transaction (lemmatising them on SQLite: about a
millisecond a message).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

SQLITE_TABLE = (
    "CREATE VIRTUAL TABLE search_fts USING fts5(terms, content='', "
    "tokenize=\"unicode61 remove_diacritics 0 tokenchars '-_.@/+'\")"
)
POSTGRES_TABLES = (
    'CREATE TABLE search_doc ("message_id" INT NOT NULL PRIMARY KEY REFERENCES "message" ("id") ON DELETE CASCADE, '
    '"ticket_id" INT NOT NULL REFERENCES "ticket" ("id") ON DELETE CASCADE, "tsv" TSVECTOR NOT NULL)',
    'CREATE INDEX "search_doc_tsv" ON "search_doc" USING GIN ("tsv")',
    'CREATE INDEX "search_doc_ticket" ON "search_doc" ("ticket_id")',
)


async def create_index(apps, state_editor) -> None:
    from models.search import rebuild_index  # at run time: the current code's terms

    conn = state_editor.client
    if conn.capabilities.dialect == "postgres":
        for sql in POSTGRES_TABLES:
            await conn.execute_script(sql)
    else:
        await conn.execute_script(SQLITE_TABLE)
    await rebuild_index(conn)


async def drop_index(apps, state_editor) -> None:
    conn = state_editor.client
    table = "search_doc" if conn.capabilities.dialect == "postgres" else "search_fts"
    await conn.execute_script(f"DROP TABLE {table}")


class Migration(migrations.Migration):
    dependencies = [('models', '0002_raw_mail_content')]

    initial = False

    operations = [
        ops.RunPython(create_index, drop_index),
    ]
