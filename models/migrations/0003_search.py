"""The ticket search index (models/search.py), and every existing message in it.

Hand-written: the index is not a tortoise model, and each database has its own kind. One row per ticket,
holding the terms of all its indexed messages, so "every word somewhere in the ticket" is one index query.
- SQLite: an FTS5 table over the lemmatised terms that models/search_terms.py makes (the tokenizer keeps
  the characters of codes and addresses inside a token, `TOKEN_CHARS`; diacritics are kept, "й" is not
  "и"), its rowid the ticket's arrival above its id (`models.search.TICKET_BITS`), so FTS5's own rowid
  order is newest first. It stores its terms (a new message rewrites its ticket's row; SQLite 3.40 has
  no contentless-delete table). Plus `client_fts`, a trigram index of client names and contracts
  (external content, kept by triggers in every transaction that writes `client`).
- PostgreSQL: `search_doc` (ticket id, its arrival, a stripped `tsvector` of the `russian`
  configuration) with a GIN index; a ticket deleted takes its row with it. No index on the arrival: the
  statement is prepared, and its generic plan (which cannot see the words) walked such an index for rare
  words too, 0.5 s a query at 100,000 tickets.
The existing messages are indexed in the same transaction (lemmatising them on SQLite: about a
millisecond a message).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

SQLITE_TABLES = (
    "CREATE VIRTUAL TABLE search_fts USING fts5(terms, "
    "tokenize=\"unicode61 remove_diacritics 0 tokenchars '-_.@/+'\")",
    "CREATE VIRTUAL TABLE client_fts USING fts5(name, contract, content='client', content_rowid='id', "
    "tokenize='trigram')",
    "INSERT INTO client_fts (client_fts) VALUES ('rebuild')",
    "CREATE TRIGGER client_fts_insert AFTER INSERT ON client BEGIN "
    "INSERT INTO client_fts (rowid, name, contract) VALUES (new.id, new.name, new.contract); END",
    "CREATE TRIGGER client_fts_delete AFTER DELETE ON client BEGIN "
    "INSERT INTO client_fts (client_fts, rowid, name, contract) VALUES ('delete', old.id, old.name, old.contract); END",
    "CREATE TRIGGER client_fts_update AFTER UPDATE OF name, contract ON client BEGIN "
    "INSERT INTO client_fts (client_fts, rowid, name, contract) VALUES ('delete', old.id, old.name, old.contract); "
    "INSERT INTO client_fts (rowid, name, contract) VALUES (new.id, new.name, new.contract); END",
)
SQLITE_DROP = ("DROP TRIGGER client_fts_insert", "DROP TRIGGER client_fts_delete", "DROP TRIGGER client_fts_update",
               "DROP TABLE client_fts", "DROP TABLE search_fts")
POSTGRES_TABLES = (
    'CREATE TABLE search_doc ("ticket_id" INT NOT NULL PRIMARY KEY REFERENCES "ticket" ("id") ON DELETE CASCADE, '
    '"arrived_at" TIMESTAMPTZ NOT NULL, "tsv" TSVECTOR NOT NULL)',
    'CREATE INDEX "search_doc_tsv" ON "search_doc" USING GIN ("tsv")',
)


async def create_index(apps, state_editor) -> None:
    from models.search import rebuild_index  # at run time: the current code's terms

    conn = state_editor.client
    if conn.capabilities.dialect == "postgres":
        for sql in POSTGRES_TABLES:
            await conn.execute_script(sql)
    else:
        for sql in SQLITE_TABLES:
            await conn.execute_script(sql)
    await rebuild_index(conn)


async def drop_index(apps, state_editor) -> None:
    conn = state_editor.client
    for sql in ("DROP TABLE search_doc",) if conn.capabilities.dialect == "postgres" else SQLITE_DROP:
        await conn.execute_script(sql)


class Migration(migrations.Migration):
    dependencies = [('models', '0002_raw_mail_content')]

    initial = False

    operations = [
        ops.RunPython(create_index, drop_index),
    ]
