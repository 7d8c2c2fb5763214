"""The composition root: settings in, a running bridge out.

`run_app` wires the adapters around the domain and runs each long-lived part as a supervised task:
the mail watcher (IMAP -> raw mail), the mail processor (raw mail -> tickets and cards), the email
sender (SMTP), the Telegram sender (cards, edits, notices), the SLA scheduler and the Telegram
dispatcher (long polling). SIGTERM/SIGINT stop them gracefully.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import timedelta

from aiogram import Bot, Dispatcher

from bot.board import TelegramBoard
from bot.factory import (
    config_file,
    mailer_recipe,
    make_calendar,
    make_mailer,
    make_parser,
    make_policy,
    make_saved_replies,
    make_use_case_config,
)
from bot.gc_freeze import freeze_startup_objects
from bot.handlers import allowed_updates, build_router, register_commands
from bot.health import serve_health
from bot.metrics import bridge_metrics
from bot.notifications import EmailNotifier, TelegramFailureHandler
from bot.outages import OutageReporter, board_poster, watch_outages
from bot.policy_config import make_text_analyser
from bot.ratelimit import RateLimiter
from bot.settings import Settings
from bot.supervisor import Supervisor
from bot.telegram import make_bot
from bot.telegram_outbox import TelegramSender
from bot.webhook import serve_webhook
from bot.workers import make_parse_pool
from mail.drafts import DraftComposer
from mail.imap import ImapConfig
from mail.intake import MailWatcher
from mail.processor import MailProcessor, ParsePool
from mail.send import EmailSender, SmtpConfig
from mail.stored import stored_mail_parser
from models import metrics_port
from models.aio import raise_if_cancelling
from models.analysed import parse_and_analyse
from models.clock import utcnow
from models.deps import Services
from models.desk import Desk
from models.effects import Effects
from models.ingest import Ingest
from models.sla import SlaConfig, SlaService
from models.sla_rules import parse_thresholds
from models.store import db
from models.store.leases import LeaseManager, run_with_lease, unique_holder

log = logging.getLogger(__name__)



@dataclass
class Bridge:
    """Everything a running process holds; built by `build_bridge`, also used by tests."""

    settings: Settings
    bot: Bot
    dispatcher: Dispatcher
    desk: Desk
    processor: MailProcessor
    watcher: MailWatcher
    email_sender: EmailSender
    telegram_sender: TelegramSender
    sla: SlaService
    executor: Executor | None
    mail_stored: asyncio.Event = field(default_factory=asyncio.Event)
    supervisor: Supervisor = field(default_factory=Supervisor)


def build_bridge(  # type: ignore[no-untyped-def]
    settings: Settings, *, clock=utcnow, parse_pool: Executor | None = None
) -> Bridge:
    """`parse_pool`: the parse workers when they were started already (`bot.workers.start_parse_pool`)."""
    bot = make_bot(settings)
    calendar = make_calendar(settings)
    board = TelegramBoard(settings, calendar=calendar, clock=clock)
    mail_stored = asyncio.Event()
    parser = make_parser(settings)
    executor: Executor | None = None
    parse_stored = None
    analyser = None
    if settings.PARSE_WORKERS > 0:
        # The workers also do the policy's text work, so the event loop is left with the lookups.
        analyser = make_text_analyser(settings)
        executor = parse_pool or make_parse_pool(settings.PARSE_WORKERS, analyser)
        # The workers read each raw mail themselves (a SQLite file or PostgreSQL, over their own
        # connections): the bytes never pass through this process.
        parse_stored = stored_mail_parser(
            settings.DATABASE_URL, functools.partial(parse_and_analyse, parser=parser, analyser=analyser)
        )
    email_sender: EmailSender
    telegram_sender: TelegramSender

    services = Services(make_policy(settings), calendar, make_mailer(settings), parser, clock)
    config = make_use_case_config(settings)
    effects = Effects(
        config, mailer=services.mailer, clock=clock,
        on_email_queued=lambda: email_sender.wake(), on_post_queued=lambda: telegram_sender.wake(),
    )
    ingest = Ingest(config, services, effects)
    processor = MailProcessor(
        ingest, parser, ParsePool(executor=executor, parse_stored=parse_stored, analyser=analyser), on_done=effects.wake
    )
    desk = Desk(config, services, effects, offload_parse=processor.offload_parse,
                saved_replies=make_saved_replies(settings))
    imap_config = ImapConfig.from_settings(settings)
    watcher = MailWatcher(imap_config, on_stored=mail_stored.set, clock=clock)
    notifier = EmailNotifier(effects)
    email_sender = EmailSender(
        SmtpConfig.from_settings(settings),
        on_event=notifier.on_email_event,  # inside the transaction that records the outcome
        after_event=lambda: telegram_sender.wake(),
        clock=clock,
        imap_config=imap_config,
        lease_seconds=settings.EMAIL_LEASE_SECONDS,
        max_backoff=settings.OUTBOX_MAX_BACKOFF_SECONDS,
        drafts=DraftComposer(mailer_recipe(settings), executor),  # acknowledgements: composed in the workers
    )
    limiter = RateLimiter(
        group_per_minute=settings.TELEGRAM_GROUP_PER_MINUTE,
        global_per_second=settings.TELEGRAM_GLOBAL_PER_SECOND,
        time_scale=settings.TELEGRAM_RATE_SCALE,
    )
    failures = TelegramFailureHandler(effects, staff_chat_id=settings.STAFF_CHAT_ID)
    telegram_sender = TelegramSender(
        bot,
        limiter=limiter,
        clock=clock,
        on_failed=failures.on_failed,
        staff_chat_id=settings.STAFF_CHAT_ID,
        language=settings.LANGUAGE,
        lease_seconds=settings.TELEGRAM_LEASE_SECONDS,  # several processes: never steal a live peer's row
        render=board.render_deferred,
        backoff_max=settings.OUTBOX_MAX_BACKOFF_SECONDS,
    )
    sla = SlaService(
        SlaConfig(
            thresholds=tuple(parse_thresholds(settings.SLA_ALERT_THRESHOLDS)),
            breach_repeat=timedelta(hours=settings.SLA_BREACH_REPEAT_HOURS),
            staff_chat_id=settings.STAFF_CHAT_ID,
            oncall_chat_id=settings.ONCALL_CHAT_ID,
            language=settings.LANGUAGE,
            digest_time=settings.SLA_DIGEST_TIME,
            rotation_path=settings.ONCALL_ROTATION_FILE or config_file(settings, "oncall.toml"),
        ),
        calendar=calendar,
        clock=clock,
        on_post_queued=telegram_sender.wake,
    )
    dispatcher = Dispatcher()
    dispatcher.include_router(build_router(settings))
    dispatcher["desk"] = desk
    dispatcher["board"] = board
    dispatcher["settings"] = settings
    return Bridge(
        settings=settings,
        bot=bot,
        dispatcher=dispatcher,
        desk=desk,
        processor=processor,
        watcher=watcher,
        email_sender=email_sender,
        telegram_sender=telegram_sender,
        sla=sla,
        executor=executor,
        mail_stored=mail_stored,
    )


async def process_mail_forever(bridge: Bridge, poll_seconds: float = 5.0) -> None:
    """Turn stored raw mail into tickets as soon as the watcher stores it (or every few seconds)."""
    while True:
        raise_if_cancelling()
        bridge.mail_stored.clear()
        if await bridge.processor.process_stored(batch=100):
            await asyncio.sleep(0)  # a backlog: let the dispatcher and senders run between batches
            continue
        try:
            await asyncio.wait_for(bridge.mail_stored.wait(), poll_seconds)
        except TimeoutError:
            pass


async def sla_forever(bridge: Bridge) -> None:
    while True:
        raise_if_cancelling()
        await bridge.sla.run_due()
        await bridge.sla.morning_digest()
        await asyncio.sleep(bridge.settings.SLA_TICK_SECONDS)


async def poll_telegram(bridge: Bridge) -> None:
    await register_commands(bridge.bot, bridge.settings)
    # handle_as_tasks=False: an update is confirmed to Telegram (by the next getUpdates offset) only
    # after its handler finished, so a crash mid-handler means a redelivery, never a lost press; the
    # handlers are idempotent (guarded updates, keyed replies), so a redelivery changes nothing.
    await bridge.dispatcher.start_polling(
        bridge.bot, handle_signals=False, close_bot_session=False, handle_as_tasks=False,
        allowed_updates=allowed_updates(bridge.dispatcher),
    )


async def receive_telegram(bridge: Bridge) -> None:
    """Long polling (one process only) or, with TELEGRAM_MODE=webhook, a webhook server (any number)."""
    settings = bridge.settings
    if settings.TELEGRAM_MODE != "webhook":
        await poll_telegram(bridge)
        return
    await register_commands(bridge.bot, settings)
    await serve_webhook(
        bridge.bot,
        bridge.dispatcher,
        url=settings.WEBHOOK_URL,
        secret=settings.WEBHOOK_SECRET.get_secret_value(),
        host=settings.WEBHOOK_LISTEN_HOST,
        port=settings.WEBHOOK_LISTEN_PORT,
    )


def start_singletons(bridge: Bridge) -> None:
    """The mail watcher, mail processor and SLA scheduler run in ONE process of a deployment at a
    time: each under its database lease (models/store/leases.py), taken over when its holder dies."""
    holder = unique_holder(bridge.settings.INSTANCE_NAME)
    ttl = bridge.settings.LEASE_SECONDS
    singletons: dict[str, Callable[[], Awaitable[None]]] = {
        "mail-processor": lambda: process_mail_forever(bridge),
        "mail-watcher": bridge.watcher.run,
        "sla-scheduler": lambda: sla_forever(bridge),
    }
    for name, work in singletons.items():
        lease = LeaseManager(name, holder, ttl)
        bridge.supervisor.start(name, lambda lease=lease, work=work: run_with_lease(lease, work))


async def run_app(settings: Settings, parse_pool: Executor | None = None) -> int:
    await db.init_db(settings.DATABASE_URL)
    try:
        pending = await db.pending_migrations()
        if pending:
            log.error(
                "the database schema is out of date (%d migration(s) pending): run `python -m bot migrate`",
                len(pending),
            )
            print("error: the database schema is out of date; run: python -m bot migrate")
            return 1
        bridge = build_bridge(settings, parse_pool=parse_pool)
        freeze_startup_objects()  # everything built so far lives as long as the process
        await serve(bridge)
        return 0
    finally:
        await db.close_db()


async def serve(bridge: Bridge, stop: asyncio.Event | None = None) -> None:
    """Run every component until `stop` is set or SIGTERM/SIGINT arrives; then shut down in order."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    sup = bridge.supervisor
    # Counted from the start (before any mail is processed), served on /metrics with /health.
    metrics = bridge_metrics(bridge)
    metrics_port.install(metrics.counters)
    sup.start("telegram-sender", bridge.telegram_sender.run)
    sup.start("email-sender", bridge.email_sender.run)
    start_singletons(bridge)  # mail-processor, mail-watcher, sla-scheduler: one process at a time
    sup.start("telegram-updates", lambda: receive_telegram(bridge))
    # Reliability: a lasting failure is said once in the staff chat; /health for monitoring.
    outages = OutageReporter(
        notify_after=bridge.settings.OUTAGE_NOTICE_SECONDS,
        post=board_poster(bridge.desk),
        timezone=bridge.settings.TIMEZONE,
    )
    sup.start("outage-watch", lambda: watch_outages(bridge, outages))
    if bridge.settings.HEALTH_PORT:
        port, host = bridge.settings.HEALTH_PORT, bridge.settings.HEALTH_HOST
        sup.start("health", lambda: serve_health(bridge, outages, host, port, metrics))
    log.info("bridge running: mailbox %s, staff chat %s", bridge.watcher.mailbox, bridge.settings.STAFF_CHAT_ID)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        try:
            await bridge.dispatcher.stop_polling()
        except RuntimeError:
            pass  # polling had not started
        await sup.stop()
        metrics_port.install(None)
        await bridge.email_sender.aclose()
        await bridge.bot.session.close()
        if bridge.executor is not None:
            bridge.executor.shutdown(wait=False, cancel_futures=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
