"""tortoise's asyncpg engine, with pool connections that are handed back without asyncpg's reset query.

Why: asyncpg's pool runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;` on every
connection it takes back, and tortoise takes a pool connection for each statement it runs outside a
transaction (and for each transaction). So every such statement cost two round trips to the server,
the second one only to undo session state the bridge never creates: it takes no advisory locks (the
leases are rows, models/store/leases.py), keeps no cursor or LISTEN outside a transaction and never SETs a
session variable (only SET LOCAL, which ends with its transaction). The policy of one request outside a
transaction ran four statements and eight round trips (docs/notes/pg.md).

What is kept: asyncpg still rolls back a transaction left open on a connection handed back (that is
`Connection._reset`, not the reset query), and drops its listeners. Whoever adds session state (a
`SET`, `pg_advisory_lock`, `LISTEN`) must add its undoing to `get_reset_query` below.

tortoise loads an engine by module path and takes its `client_class`; models/store/db.py names this module
for PostgreSQL URLs. The dialect, the executor and the transaction wrapper stay tortoise's own.
"""

from __future__ import annotations

from asyncpg.connection import Connection
from tortoise.backends.asyncpg.client import AsyncpgDBClient


class BridgeConnection(Connection):  # type: ignore[misc]  # asyncpg ships no type hints
    def get_reset_query(self) -> str:
        """Nothing to undo (see the module's docstring): no statement on release."""
        return ""


class BridgeAsyncpgClient(AsyncpgDBClient):
    connection_class = BridgeConnection


client_class = BridgeAsyncpgClient
ENGINE = __name__
