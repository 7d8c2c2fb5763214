"""PostgreSQL's search walks its index rows newest first (issue 20's search, issue 22's parity):
`search_doc (arrived_at DESC, ticket_id DESC)`. With it a query of common words reads the newest matches
in arrival order and stops at the limit instead of fetching and sorting every ticket that says them
(about 50,000 at 100,000 tickets); models/search.py plans each search statement for its own words
(`SET LOCAL plan_cache_mode = force_custom_plan`), so rare words still start from the GIN index.
SQLite's FTS5 rowid already is the arrival order: nothing to do there."""

from tortoise import migrations
from tortoise.migrations import operations as ops

INDEX = "search_doc_arrival"


async def create_index(apps, state_editor) -> None:
    conn = state_editor.client
    if conn.capabilities.dialect == "postgres":
        await conn.execute_script(
            f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON "search_doc" ("arrived_at" DESC, "ticket_id" DESC)')


async def drop_index(apps, state_editor) -> None:
    conn = state_editor.client
    if conn.capabilities.dialect == "postgres":
        await conn.execute_script(f'DROP INDEX IF EXISTS "{INDEX}"')


class Migration(migrations.Migration):
    dependencies = [('models', '0005_email_drafts')]

    initial = False

    operations = [
        ops.RunPython(create_index, drop_index),
    ]
