"""Building the aiogram Bot: every call goes to TELEGRAM_API_URL (Telegram, or a fake one in tests)."""

from __future__ import annotations

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.settings import Settings


def make_bot(settings: Settings, *, timeout: float = 60.0) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.TELEGRAM_API_URL), timeout=timeout)
    return Bot(settings.TELEGRAM_BOT_TOKEN.get_secret_value(), session=session)
