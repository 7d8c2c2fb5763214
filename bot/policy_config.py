"""The policy's configuration from the settings, and the parse workers' handle on its text work.

Apart from `bot.factory` because the parse pool is started before the rest of the process is imported
(bot/cli.py): this module only needs the policy package, which the process imports anyway.
"""

from __future__ import annotations

from bot.settings import CoreSettings
from models.policy import PolicyConfig
from models.policy.analyser import TextAnalyser


def make_policy_config(settings: CoreSettings) -> PolicyConfig:
    return PolicyConfig(
        monthly_limit=settings.MONTHLY_LIMIT,
        count_refused=settings.COUNT_REFUSED_TOWARD_LIMIT,
        duplicate_window_days=settings.DUPLICATE_WINDOW_DAYS,
        company_addresses=settings.company_addresses,
        trusted_authserv_ids=settings.trusted_authserv_ids,
        timezone=settings.TIMEZONE,
        config_dir=settings.CONFIG_DIR,
    )


def make_text_analyser(settings: CoreSettings) -> TextAnalyser:
    """The policy's text work for the parse workers (same configuration as make_policy's engine)."""
    return TextAnalyser(make_policy_config(settings))
