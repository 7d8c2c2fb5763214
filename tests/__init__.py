# `bot` first: it makes aiogram's type schemas lazy (bot/runtime/compat_pydantic.py) before any test module imports
# aiogram, so the in-process tests run aiogram exactly as `python -m bot` does.
import bot  # noqa: F401
