"""The store layer: how the domain's tables reach SQLite or PostgreSQL.

Everything that differs between the two databases lives here, so the use cases above it (`models/`)
keep one code path: the database's lifecycle and migrations (`db.py`), the PostgreSQL engine without a
reset query (`pg_engine.py`), the SQLite engine whose transactions begin IMMEDIATE (`sqlite_engine.py`), dialect-neutral SQL helpers (`sql.py`), rows read and written past the ORM
on hot paths (`fast_rows.py`), raw mail bytes in and out (`raw_store.py`: a zeroblob on SQLite, COPY on
PostgreSQL), outbox claims (`claims.py`: SKIP LOCKED on PostgreSQL), the process leases (`leases.py`) and
the two exactly pinned library patches (`compat_tortoise.py`, `compat_aiosqlite.py`).
"""
