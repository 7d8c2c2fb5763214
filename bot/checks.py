"""`python -m bot check`: connect to every component and say OK or why not, one line each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.settings import Settings

CHECK_TIMEOUT = 20.0


async def check_database(settings: Settings) -> str:
    from models.store import db

    try:
        await db.init_db(settings.DATABASE_URL)
        pending = await db.pending_migrations()
    finally:
        await db.close_db()
    if pending:
        raise RuntimeError(f"{len(pending)} migration(s) pending: run `python -m bot migrate`")
    scheme = settings.DATABASE_URL.split(":", 1)[0]
    return f"{scheme} database reachable, schema up to date"


async def check_imap_component(settings: Settings) -> str:
    from mail.imap import ImapConfig, check_imap

    return await check_imap(ImapConfig.from_settings(settings))


async def check_smtp_component(settings: Settings) -> str:
    from mail.send import SmtpConfig, check_smtp

    return await check_smtp(SmtpConfig.from_settings(settings))


async def check_telegram(settings: Settings) -> str:
    from bot.telegram import make_bot

    bot = make_bot(settings)
    try:
        me = await bot.get_me()
        chat = await bot.get_chat(settings.STAFF_CHAT_ID)
        member = await bot.get_chat_member(settings.STAFF_CHAT_ID, me.id)
    finally:
        await bot.session.close()
    title = chat.title or chat.id
    return f"bot @{me.username} is {member.status} in the staff chat {title!r}"


def check_saved_replies(settings: Settings) -> str:
    from bot.factory import make_saved_replies
    from bot.settings import SettingsError

    try:
        replies = make_saved_replies(settings)
    except SettingsError as error:
        raise RuntimeError(error.problems[0]) from None
    return f"{len(replies.shipped)} saved replies from replies.toml"


def check_templates(settings: Settings) -> str:
    from bot.factory import make_renderer

    problems = make_renderer(settings).check_all()
    if problems:
        raise RuntimeError("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    return "every email template renders in ru and en"


async def run_checks(settings: Settings) -> int:
    checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("database", lambda: check_database(settings)),
        ("imap", lambda: check_imap_component(settings)),
        ("smtp", lambda: check_smtp_component(settings)),
        ("telegram", lambda: check_telegram(settings)),
        ("templates", lambda: asyncio.to_thread(check_templates, settings)),
        ("replies", lambda: asyncio.to_thread(check_saved_replies, settings)),
    ]
    failed = 0
    for name, check in checks:
        try:
            detail = await asyncio.wait_for(check(), CHECK_TIMEOUT)
            print(f"{name:<10} OK    {detail}")
        except Exception as exc:  # every failure becomes one readable line, never a traceback
            failed += 1
            reason = (str(exc) or exc.__class__.__name__).splitlines()[0][:300]
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {CHECK_TIMEOUT:.0f} s"
            print(f"{name:<10} FAIL  {reason}")
    return 0 if failed == 0 else 1
