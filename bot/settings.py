"""Typed settings read from the environment and `.env`.

The names are a public contract (README, .env.example). Secrets are `SecretStr`, so they never
appear in a repr, a log line or a validation error. `load_settings()` turns validation errors into
one clear line per problem; the CLI prints them and exits with code 2.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"

# An example value for every setting, shown next to its error so the operator knows the shape.
EXAMPLES: dict[str, str] = {
    "TELEGRAM_BOT_TOKEN": "123456789:AAE-your-token-from-BotFather",
    "TELEGRAM_API_URL": "https://api.telegram.org",
    "TELEGRAM_PROXY": "http://user:password@proxy.example.ru:3128",
    "STAFF_CHAT_ID": "-1001234567890",
    "IMAP_HOST": "imap.yandex.ru",
    "IMAP_PORT": "993",
    "IMAP_USER": "support@storeolis.ru",
    "IMAP_PASSWORD": "app-password",
    "IMAP_SECURITY": "ssl",
    "IMAP_FOLDER": "INBOX",
    "SMTP_HOST": "smtp.yandex.ru",
    "SMTP_PORT": "465",
    "SMTP_USER": "support@storeolis.ru",
    "SMTP_PASSWORD": "app-password",
    "SMTP_SECURITY": "ssl",
    "SUPPORT_ADDRESS": "support@storeolis.ru",
    "DATABASE_URL": "sqlite://./data/bridge.sqlite3",
    "TIMEZONE": "Europe/Moscow",
    "LANGUAGE": "ru",
    "OUTBOX_MAX_BACKOFF_SECONDS": "60",
    "CONFIG_DIR": "/etc/storeolis-bridge",
    "MONTHLY_LIMIT": "3",
    "COUNT_REFUSED_TOWARD_LIMIT": "true",
    "DUPLICATE_WINDOW_DAYS": "30",
    "TRUSTED_AUTHSERV_IDS": "mx.yandex.ru",
    "SLA_BUSINESS_DAYS": "5",
    "SLA_ALERT_THRESHOLDS": "1d,4h,breach",
    "SLA_BREACH_REPEAT_HOURS": "4",
    "SLA_DIGEST_TIME": "09:30",
    "ONCALL_ROTATION_FILE": "/etc/storeolis-bridge/oncall.toml",
    "SLA_TICK_SECONDS": "20",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
    "COMPANY_ADDRESSES": "info@storeolis.ru,sales@storeolis.ru",
    "COMPANY_NAME": "Storeolis",
    "PARSE_WORKERS": "2",
    "ONCALL_CHAT_ID": "-1001234567891",
    "TELEGRAM_GROUP_PER_MINUTE": "20",
    "TELEGRAM_GLOBAL_PER_SECOND": "30",
    "TELEGRAM_RATE_SCALE": "1.0",
    "STAFF_CACHE_SECONDS": "300",
    "IMAP_POLL_SECONDS": "30",
    "IMAP_IDLE_SECONDS": "1500",
    "IMAP_USE_IDLE": "true",
    "IMAP_BATCH_SIZE": "100",
    "IMAP_TIMEOUT_SECONDS": "60",
    "IMAP_HANDLED_FLAG": "$StoreolisHandled",
    "IMAP_HANDLED_FOLDER": "Handled",
    "MAX_MESSAGE_BYTES": "26214400",
    "SMTP_TIMEOUT_SECONDS": "30",
    "SMTP_SENT_FOLDER": "Sent",
    "SUPPORT_NAME": "Техподдержка Storeolis",
    "EMAIL_SIGNATURE": "С уважением, техподдержка Storeolis",
    "REFUSAL_GRACE_SECONDS": "30",
    "ACKNOWLEDGE_REQUESTS": "true",
    "ACK_MAX_PER_HOUR": "5",
    "EMAIL_LEASE_SECONDS": "300",
    "OUTAGE_NOTICE_SECONDS": "300",
    "HEALTH_PORT": "8080",
    "HEALTH_HOST": "127.0.0.1",
    "LEASE_SECONDS": "30",
    "INSTANCE_NAME": "bridge-1",
    "TELEGRAM_LEASE_SECONDS": "300",
    "TELEGRAM_MODE": "polling",
    "WEBHOOK_URL": "https://bridge.storeolis.ru/telegram",
    "WEBHOOK_LISTEN_HOST": "127.0.0.1",
    "WEBHOOK_LISTEN_PORT": "8081",
    "WEBHOOK_SECRET": "$(openssl rand -hex 32)",
}

# Values shipped in .env.example that only show the shape: left as they are, the bridge would try to log
# in with them and fail forever. Refused like missing values, saying what to put there and where to get it.
PLACEHOLDERS: dict[str, tuple[str, str]] = {
    "TELEGRAM_BOT_TOKEN": (
        "123456789:AAE-your-token-from-BotFather",
        "put your bot's token there: in Telegram, message @BotFather and send /newbot (or /token for an existing bot)",
    ),
    "STAFF_CHAT_ID": (
        "-1001234567890",
        "put your staff group's id there: add the bot to the private staff group, then read the group's id "
        "(a negative number starting with -100) from @RawDataBot added to the group, see README \"Setting up\"",
    ),
    "IMAP_PASSWORD": (
        "app-password",
        "put the support mailbox's password there (Yandex, Gmail: an app password created in the account's "
        "security settings)",
    ),
    "SMTP_PASSWORD": (
        "app-password",
        "put the support mailbox's password there (Yandex, Gmail: an app password created in the account's "
        "security settings)",
    ),
}


def _refuse_placeholder(name: str, value: object) -> object:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    placeholder, hint = PLACEHOLDERS[name]
    if isinstance(raw, str | int) and str(raw).strip() == placeholder:
        raise PydanticCustomError("placeholder", hint)
    return value


# socks5:// goes through aiogram's own proxy support, i.e. the aiohttp-socks package, a dependency of the
# bridge (pyproject.toml): no "is it installed" check here, as for any other dependency.
PROXY_SCHEMES = ("http", "https", "socks5")


def redact_url(url: str) -> str:
    """`scheme://user:password@host:port` -> `scheme://user:***@host:port`: fit for a log line."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostport = rest.rpartition("@")
    if not sep or not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostport}" if ":" in userinfo else f"{scheme}://{user}@{hostport}"


def check_proxy_url(value: str) -> str:
    """A proxy URL `scheme://[user:password@]host:port`; raises ValueError saying what is wrong
    without repeating the URL (it may hold a password)."""
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        raise ValueError("must start with http://, https:// or socks5://")
    try:
        port = parts.port
    except ValueError:  # not a number or out of range
        port = None
    if not parts.hostname or port is None or port == 0:
        raise ValueError(f"must be {scheme}://[user:password@]host:port, with the host and the port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"must be {scheme}://[user:password@]host:port, with nothing after the port")
    return f"{scheme}://{parts.netloc}"


def _optional_path(value: object) -> object:
    # `CONFIG_DIR=` as shipped in .env.example means "not set"; Path("") would be the current directory.
    return None if isinstance(value, str) and not value.strip() else value


class SettingsError(Exception):
    """Invalid or missing settings; `problems` holds one human line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


Security = Literal["ssl", "starttls", "none"]


class CoreSettings(BaseSettings):
    """What commands that only touch the database need (migrate, clients, explain)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        hide_input_in_errors=True,
    )

    # Domain
    DATABASE_URL: str = "sqlite://./data/bridge.sqlite3"
    TIMEZONE: str = "Europe/Moscow"
    LANGUAGE: Literal["ru", "en"] = "ru"
    CONFIG_DIR: Path | None = None  # operator overrides: word lists, FAQ, templates, calendar
    MONTHLY_LIMIT: int = Field(default=3, ge=1)
    COUNT_REFUSED_TOWARD_LIMIT: bool = True
    DUPLICATE_WINDOW_DAYS: int = Field(default=30, ge=1)
    TRUSTED_AUTHSERV_IDS: str = ""
    SLA_BUSINESS_DAYS: int = Field(default=5, ge=1)
    SLA_ALERT_THRESHOLDS: str = "1d,4h,breach"
    SLA_BREACH_REPEAT_HOURS: float = Field(default=4.0, gt=0)
    # The on-call agent's morning digest, local time; "off" when a desk does not want it.
    SLA_DIGEST_TIME: str = Field(default="09:30", pattern=r"^(?:([01]\d|2[0-3]):[0-5]\d|off)$")
    ONCALL_ROTATION_FILE: Path | None = None  # weekly/daily on-call schedule (TOML)
    SLA_TICK_SECONDS: float = Field(default=20.0, gt=0)  # how often due alerts are looked for
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    LOG_FORMAT: Literal["text", "json"] = "text"  # json: one object per line (time, level, logger, message, ticket, uid)
    SUPPORT_ADDRESS: str = "support@storeolis.ru"
    COMPANY_ADDRESSES: str = ""  # other company addresses (comma separated), for duplicates (2.6)
    COMPANY_NAME: str = "Storeolis"
    PARSE_WORKERS: int = Field(default=2, ge=0, le=16)  # processes parsing a backlog; 0 parses inline

    @field_validator("CONFIG_DIR", "ONCALL_ROTATION_FILE", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: object) -> object:
        return _optional_path(value)

    @field_validator("CONFIG_DIR")
    @classmethod
    def _config_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            what = "is not a directory" if value.exists() else "does not exist"
            raise ValueError(f"{str(value)!r} {what} (leave it empty for the built-in word lists and templates)")
        return value

    @field_validator("ONCALL_ROTATION_FILE")
    @classmethod
    def _rotation_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            what = "is a directory, not a file" if value.is_dir() else "does not exist"
            raise ValueError(f"{str(value)!r} {what} (leave it empty when there is no rotation)")
        return value

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value  # `LOG_LEVEL=debug` is fine

    @field_validator("TIMEZONE")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("SLA_ALERT_THRESHOLDS")
    @classmethod
    def _thresholds(cls, value: str) -> str:
        from models.sla_rules import parse_thresholds

        parse_thresholds(value)  # raises ValueError with the bad item named
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
            raise ValueError("must start with sqlite:// or postgres://")
        return value

    @field_validator("SUPPORT_ADDRESS")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip().lower()
        if value.count("@") != 1 or any(c in value for c in " \r\n,<>"):
            raise ValueError("must be a single email address")
        return value

    # Derived values -------------------------------------------------------------------------------
    @property
    def company_addresses(self) -> frozenset[str]:
        extra = {a.strip().lower() for a in self.COMPANY_ADDRESSES.split(",") if a.strip()}
        return frozenset(extra | {self.SUPPORT_ADDRESS})

    @property
    def trusted_authserv_ids(self) -> frozenset[str]:
        return frozenset(a.strip().lower() for a in self.TRUSTED_AUTHSERV_IDS.split(",") if a.strip())


class Settings(CoreSettings):
    """Everything `run` and `check` need: the core plus Telegram, IMAP and SMTP."""

    # Telegram
    TELEGRAM_BOT_TOKEN: SecretStr
    TELEGRAM_API_URL: str = DEFAULT_TELEGRAM_API_URL
    # Every Bot API call through this proxy (networks that cannot reach Telegram); empty: direct.
    TELEGRAM_PROXY: SecretStr = SecretStr("")
    STAFF_CHAT_ID: int
    ONCALL_CHAT_ID: int | None = None
    TELEGRAM_GROUP_PER_MINUTE: int = Field(default=20, ge=1)  # Telegram's limit for one group
    TELEGRAM_GLOBAL_PER_SECOND: int = Field(default=30, ge=1)
    TELEGRAM_RATE_SCALE: float = Field(default=1.0, gt=0)  # <1 speeds the limits up (benchmarks)
    STAFF_CACHE_SECONDS: int = Field(default=300, ge=0)

    # Mail in
    IMAP_HOST: str
    IMAP_PORT: int = Field(default=993, ge=1, le=65535)
    IMAP_USER: str
    IMAP_PASSWORD: SecretStr
    IMAP_SECURITY: Security = "ssl"
    IMAP_FOLDER: str = "INBOX"
    IMAP_POLL_SECONDS: float = Field(default=30.0, gt=0)
    IMAP_IDLE_SECONDS: float = Field(default=25 * 60, gt=0, le=29 * 60)  # RFC 2177: renew before 29 min
    IMAP_USE_IDLE: bool = True
    IMAP_BATCH_SIZE: int = Field(default=100, ge=1, le=500)  # aioimaplib recursion limit: keep batches small
    IMAP_TIMEOUT_SECONDS: float = Field(default=60.0, gt=0)
    IMAP_HANDLED_FLAG: str = "$StoreolisHandled"
    IMAP_HANDLED_FOLDER: str = ""  # when set, handled mail is moved there instead of flagged
    MAX_MESSAGE_BYTES: int = Field(default=25 * 1024 * 1024, ge=1024)

    # Mail out
    SMTP_HOST: str
    SMTP_PORT: int = Field(default=465, ge=1, le=65535)
    SMTP_USER: str = ""
    SMTP_PASSWORD: SecretStr = SecretStr("")
    SMTP_SECURITY: Security = "ssl"
    SMTP_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    SMTP_SENT_FOLDER: str = ""  # IMAP folder that receives a copy of every email sent
    SUPPORT_NAME: str = ""  # display name in From; default depends on LANGUAGE
    EMAIL_SIGNATURE: str = ""
    REFUSAL_GRACE_SECONDS: int = Field(default=30, ge=0)
    ACKNOWLEDGE_REQUESTS: bool = True  # "registered as [#N], first processing by ..." on every new request
    ACK_MAX_PER_HOUR: int = Field(default=5, ge=1)  # acknowledgements per sender address in a rolling hour

    # Reliability (docs/reliability.md)
    EMAIL_LEASE_SECONDS: float = Field(default=300.0, gt=0)  # a SENDING email older than this: its sender died
    OUTAGE_NOTICE_SECONDS: float = Field(default=300.0, gt=0)  # a failure lasting this long is told to the staff chat
    # Longest wait between two tries of the SMTP server / Telegram during an outage, and of one failing
    # row (models/backoff.py). Above an hour the desk would look dead long after the server is back.
    OUTBOX_MAX_BACKOFF_SECONDS: float = Field(default=60.0, ge=0.1, le=3600)
    HEALTH_PORT: int | None = Field(default=None, ge=1, le=65535)  # GET /health on this port; unset: off
    HEALTH_HOST: str = "127.0.0.1"

    # Several processes on one PostgreSQL database (docs/reliability.md, "Several processes")
    LEASE_SECONDS: float = Field(default=30.0, ge=1)  # singleton roles (mail watcher, SLA): takeover after this
    INSTANCE_NAME: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}", max_length=150)
    TELEGRAM_LEASE_SECONDS: float = Field(default=300.0, ge=1)  # a SENDING post older than this: its sender died
    TELEGRAM_MODE: Literal["polling", "webhook"] = "polling"  # only ONE process may poll; webhook for several
    WEBHOOK_URL: str = ""  # the public https URL Telegram posts updates to (your reverse proxy)
    WEBHOOK_LISTEN_HOST: str = "127.0.0.1"
    WEBHOOK_LISTEN_PORT: int = Field(default=8081, ge=1, le=65535)
    WEBHOOK_SECRET: SecretStr = SecretStr("")  # checked against X-Telegram-Bot-Api-Secret-Token

    @field_validator("TELEGRAM_BOT_TOKEN", "STAFF_CHAT_ID", "IMAP_PASSWORD", "SMTP_PASSWORD", mode="before")
    @classmethod
    def _not_a_placeholder(cls, value: object, info: ValidationInfo) -> object:
        return _refuse_placeholder(info.field_name or "", value)

    @field_validator("INSTANCE_NAME")
    @classmethod
    def _instance_name(cls, value: str) -> str:
        return value.strip() or f"{socket.gethostname()}:{os.getpid()}"  # `INSTANCE_NAME=` means the default

    @model_validator(mode="after")
    def _webhook_complete(self) -> Settings:
        if self.TELEGRAM_MODE != "webhook":
            return self
        if not self.WEBHOOK_URL.startswith("https://"):
            raise ValueError("TELEGRAM_MODE=webhook needs WEBHOOK_URL, the public https:// URL Telegram calls "
                             "(example: WEBHOOK_URL=https://bridge.storeolis.ru/telegram)")
        # Without a secret anyone reaching the port could forge a staff member's button press.
        if not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", self.WEBHOOK_SECRET.get_secret_value()):
            raise ValueError("TELEGRAM_MODE=webhook needs WEBHOOK_SECRET: 16-256 characters A-Z a-z 0-9 _ - "
                             "(example: WEBHOOK_SECRET=$(openssl rand -hex 32))")
        return self

    @field_validator("HEALTH_PORT", "ONCALL_CHAT_ID", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `HEALTH_PORT=` as in .env.example means "not set", not "an invalid integer".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("TELEGRAM_API_URL")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("TELEGRAM_PROXY")
    @classmethod
    def _proxy_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value().strip()
        return SecretStr(check_proxy_url(raw) if raw else "")

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> Settings:
        # Plain-text IMAP/SMTP would send the mailbox password in the clear: allow it for loopback only.
        for prefix in ("IMAP", "SMTP"):
            host = getattr(self, f"{prefix}_HOST")
            if getattr(self, f"{prefix}_SECURITY") == "none" and host not in (
                "127.0.0.1",
                "localhost",
                "::1",
            ):
                raise ValueError(f"{prefix}_SECURITY=none is allowed only for 127.0.0.1/localhost")
        return self

    @property
    def telegram_proxy(self) -> str | None:
        """The proxy URL with its credentials (for the HTTP client only), or None: direct."""
        return self.TELEGRAM_PROXY.get_secret_value() or None

    @property
    def support_name(self) -> str:
        if self.SUPPORT_NAME:
            return self.SUPPORT_NAME
        return "Техподдержка Storeolis" if self.LANGUAGE == "ru" else "Storeolis Support"


def _describe(error: dict) -> str:
    name = ".".join(str(p) for p in error.get("loc", ())) or "settings"
    kind = error.get("type", "")
    if kind == "missing":
        what = "is required but not set"
    elif kind == "placeholder":
        # The example value is what is wrong: showing it again as "example" would only confuse.
        return f"{name} still holds the example value from .env.example: {error.get('msg', '')}"
    else:
        what = error.get("msg", "is invalid").removeprefix("Value error, ")
        what = f"is invalid: {what}"
    example = EXAMPLES.get(name)
    if name == "settings" or name not in Settings.model_fields:
        return f"settings: {what}"
    return f"{name} {what}" + (f" (example: {name}={example})" if example else "")


def load_settings(env_file: str | Path | None = ".env", **overrides: object) -> Settings:
    """Read the settings, raising SettingsError with one line per problem (never a secret value)."""
    return _load(Settings, env_file, overrides)  # type: ignore[return-value]


def load_core_settings(env_file: str | Path | None = ".env", **overrides: object) -> CoreSettings:
    """The database/domain settings only: for commands that need no Telegram, IMAP or SMTP."""
    return _load(CoreSettings, env_file, overrides)


def _load(cls: type[CoreSettings], env_file: str | Path | None, overrides: dict) -> CoreSettings:
    try:
        return cls(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError([_describe(e) for e in exc.errors(include_input=False)]) from None
