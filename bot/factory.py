"""Builders shared by `run`, `check`, `explain` and the tests: settings in, configured parts out."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bot.policy_config import make_policy_config
from bot.settings import CoreSettings, Settings, SettingsError
from mail.drafts import MailerRecipe
from mail.mailer import TemplateMailer
from mail.parse import parse_message
from mail.render import EmailRenderer
from models.calendar import BusinessCalendar
from models.deps import UseCaseConfig
from models.inbound import InboundMessage
from models.policy import PolicyEngine, TortoisePolicyRepository
from models.saved_replies import SavedReplies, SavedReplyError, load_file


def config_file(settings: CoreSettings, name: str) -> Path | None:
    """An operator's override in CONFIG_DIR, when it exists."""
    if settings.CONFIG_DIR is None:
        return None
    path = settings.CONFIG_DIR / name
    return path if path.exists() else None


def make_renderer(settings: Settings) -> EmailRenderer:
    return make_mailer(settings).renderer


def mailer_recipe(settings: Settings) -> MailerRecipe:
    """The mailer's settings as plain values: a parse worker builds the same mailer from them."""
    override = config_file(settings, "templates/email")
    return MailerRecipe(
        from_address=settings.SUPPORT_ADDRESS,
        from_name=settings.support_name,
        override_dir=str(override) if override is not None else None,
        company_name=settings.COMPANY_NAME,
        support_address=settings.SUPPORT_ADDRESS,
        signature=settings.EMAIL_SIGNATURE or None,
    )


def make_mailer(settings: Settings) -> TemplateMailer:
    return mailer_recipe(settings).build()


def make_parser(settings: CoreSettings, max_bytes: int = 25 * 1024 * 1024) -> Callable[[bytes], InboundMessage]:
    # A partial of a module-level function pickles, so a process pool can run it.
    return functools.partial(
        parse_message, max_bytes=getattr(settings, "MAX_MESSAGE_BYTES", max_bytes), own_addresses=settings.company_addresses
    )


def make_policy(settings: CoreSettings) -> PolicyEngine:
    return PolicyEngine(make_policy_config(settings), TortoisePolicyRepository())


def make_calendar(settings: CoreSettings) -> BusinessCalendar:
    return BusinessCalendar(settings.TIMEZONE, override_path=config_file(settings, "calendar.toml"))


def make_use_case_config(settings: Settings) -> UseCaseConfig:
    return UseCaseConfig(
        staff_chat_id=settings.STAFF_CHAT_ID,
        support_address=settings.SUPPORT_ADDRESS,
        company_addresses=settings.company_addresses,
        language=settings.LANGUAGE,
        timezone=settings.TIMEZONE,
        sla_business_days=settings.SLA_BUSINESS_DAYS,
        refusal_grace=timedelta(seconds=settings.REFUSAL_GRACE_SECONDS),
        monthly_limit=settings.MONTHLY_LIMIT,
        acknowledge_requests=settings.ACKNOWLEDGE_REQUESTS,
        ack_max_per_hour=settings.ACK_MAX_PER_HOUR,
    )


SHIPPED_REPLIES = Path(__file__).resolve().parents[1] / "config" / "replies.toml"


def make_saved_replies(settings: CoreSettings) -> SavedReplies:
    """The saved replies shipped in config/replies.toml, or the operator's CONFIG_DIR/replies.toml instead
    (those in the chat are in the database). A reply the checks refuse is a settings error: one line."""
    path = config_file(settings, "replies.toml") or SHIPPED_REPLIES
    try:
        return SavedReplies(load_file(path))
    except SavedReplyError as error:
        raise SettingsError([f"saved replies: {error.code}: {error.detail}"]) from None
    except (tomllib.TOMLDecodeError, OSError) as error:
        raise SettingsError([f"saved replies: {path}: {error}"]) from None
