"""The Telegram side and the process: settings, the staff chat, the composition root.

aiogram's type schemas are made lazy here, before any module of this package can import aiogram:
see bot/runtime/compat_pydantic.py (about 100 MB less RSS and seconds less start-up).
"""

from bot.runtime.compat_pydantic import install as _install_lazy_types

_install_lazy_types()
