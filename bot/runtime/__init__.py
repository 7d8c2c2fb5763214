"""Process tuning and the compat patches of library internals: one `compat_<library>.py` per library,
each pinned to the exact version it was written against (pyproject.toml) and checked by
tests/test_compat.py, which fails when the library changes underneath it."""
