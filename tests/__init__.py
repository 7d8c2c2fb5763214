# `bot` first: it makes aiogram's type schemas lazy (bot/lazy_types.py) before any test module imports
# aiogram, so the in-process tests run aiogram exactly as `python -m bot` does.
import bot  # noqa: F401
