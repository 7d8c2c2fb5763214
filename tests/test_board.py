"""TelegramBoard rendering: whatever an email contains, a post parses as Telegram HTML and fits 4096
UTF-16 units; keyboards carry ids only, within 64 bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.board import BoardConfig, TelegramBoard, TelegramViews, tg_escape
from bot.callbacks import Op, Reason, RefuseAction, RefuseOp, TicketAction
from bot.i18n import EN, RU, plural, t
from bot.text import cut_utf16, visible_len
from bot.views.delivery import shape
from models.calendar import BusinessCalendar
from models.intents import CardChanged, Followup, NewCard, Postable
from models.policy.base import ClientMatch, Finding, FindingCode, Verdict
from models.tables import Client, Decision, Message, MessageDirection, StaffMember, Ticket, TicketStatus
from tests.fuzzing import examples
from tests.rig.fake_telegram import MAX_TEXT_LENGTH, parse_html, strip_formatted, utf16_len

HOSTILE = [
    "<script>alert(1)</script>",
    "</b></i></blockquote>",
    "&amp; &nbsp; & &#0; &#xD800;",
    "unmatched < and > and <b",
    "👨‍👩‍👧‍👦 𝕏 😀" * 50,
    "\x00\x01 control \u202e RTL",
]


def telegram_view(text: str) -> str:
    """What Telegram would show, failing exactly as it would on bad HTML or length."""
    plain, entities = strip_formatted(*parse_html(text, strict_entities=True))
    assert plain, "message text is empty"
    assert utf16_len(plain) <= MAX_TEXT_LENGTH, f"message is too long: {utf16_len(plain)}"
    return plain


def make_board(language: str = "ru") -> TelegramBoard:
    return TelegramBoard(BoardConfig(staff_chat_id=-100, language=language), calendar=BusinessCalendar(),
                         clock=lambda: datetime(2026, 11, 25, 10, 0, tzinfo=UTC))


async def posted_params(board: TelegramBoard, post: Postable) -> dict[str, Any]:
    """The params the sender posts for `post`: an intent is rendered only when it is sent."""
    form = shape(post.to_payload())
    return {**await board.render_deferred(form["render"]), **form.get("params", {})}


async def hostile_ticket(body: str, status: TicketStatus = TicketStatus.NEW) -> Ticket:
    bad = " ".join(HOSTILE)
    client = await Client.create(name=f"ООО <Ромашка> & {bad}"[:300], inn="7707083893")
    verdict = Verdict(
        findings=[
            Finding(FindingCode.PROFANITY, "2.6", "Нецензурная лексика", "Obscene language",
                    {"kind": "profanity", "hits": [{"word": w} for w in HOSTILE]}),
            Finding(FindingCode.DUPLICATE, "2.6", "Дублирование <сообщения>", "Duplicate", {"original_ticket": 7}),
            Finding(FindingCode.MONTHLY_LIMIT, "2.6", "Лимит", "Limit", {"count": 4, "limit": 3}),
            *[Finding(FindingCode.UNCLEAR, "2.1-2.2", bad * 3, bad * 3, {"reason": bad * 5}, "warn")] * 10,
        ],
        client=ClientMatch(client.id, client.name, "7707083893", None, True, "address"),
        candidates=[], sender_verified=None, month_count=4, monthly_limit=3, suggestion="refuse",
        refuse_reason="profanity",
    )
    arrived = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    ticket = await Ticket.create(
        client=client, status=status, arrived_at=arrived, month_key="2026-11", subject=(bad * 10)[:1000],
        sender_address="evil<>&@example.org", sender_name=bad[:300], verdict=verdict.to_json(),
        sla_due_at=arrived + timedelta(days=7), first_decided_at=arrived + timedelta(days=8)
        if status != TicketStatus.NEW else None,
    )
    await Message.create(
        ticket=ticket, direction=MessageDirection.INBOUND, subject=ticket.subject, text=body, new_text=body,
        from_address=ticket.sender_address, from_name=ticket.sender_name,
        attachments=[{"filename": f"{h}.pdf", "size": 10**8, "part_index": i, "content_type": "application/pdf"}
                     for i, h in enumerate(HOSTILE * 5)],
    )
    staff, _ = await StaffMember.get_or_create(telegram_id=1, defaults={"name": bad[:200], "username": "x"})
    for action in ("accepted", "refused", "answered_faq", "replied", "closed"):
        await Decision.create(ticket=ticket, staff=staff, action=action, reason="profanity", comment=bad * 20)
    return ticket


@pytest.mark.parametrize("status", list(TicketStatus))
@pytest.mark.parametrize("body", ["", "коротко", ("<b>x</b> & 😀" * 20000)[:100_000], "😀" * 5000])
async def test_cards_of_hostile_mail_parse_and_fit_in_every_state(db, status, body):
    ticket = await hostile_ticket(body, status)
    board = make_board()
    for params in (await posted_params(board, NewCard(ticket.id)),
                   await posted_params(board, CardChanged(ticket.id))):
        plain = telegram_view(params["text"])
        assert "<script>alert(1)</script>" in plain
        for row in params["reply_markup"]["inline_keyboard"]:
            for button in row:
                assert len(button["callback_data"].encode()) <= 64
    message = await Message.get(ticket_id=ticket.id)
    telegram_view((await posted_params(board, Followup(ticket.id, message.id, note="bounce:" + "<x>" * 500)))["text"])
    telegram_view(board.notice_text("quarantined", {"raw_mail_id": 1, "reason": "<b" * 2000, "size": 5}))


async def test_card_cites_clauses_and_evidence(db):
    ticket = await hostile_ticket("Текст обращения")
    board = make_board()
    text = telegram_view((await posted_params(board, NewCard(ticket.id)))["text"])
    assert "Нецензурная лексика (п. 2.6)" in text and "слова: «<script>alert(1)</script>»" in text
    assert "Дублирование <сообщения> (п. 2.6): исходное обращение #7" in text
    assert "4-е обращение, лимит 3" in text and "4 из 3 обращений в этом месяце" in text
    english_board = make_board("en")
    english = telegram_view((await posted_params(english_board, NewCard(ticket.id)))["text"])
    assert "Obscene language (clause 2.6)" in english and "original ticket #7" in english


async def test_new_card_is_rendered_when_sent_and_shows_the_ticket_as_it_is_then(db):
    ticket = await hostile_ticket("Текст обращения")
    board = make_board()
    post = NewCard(ticket.id)  # at ingest: no rendering, no query
    assert post.to_payload() == {"intent": "new_card", "ticket_id": ticket.id}
    assert shape(post.to_payload()) == {"method": "sendMessage", "render": post.to_payload(),
                                        "record": {"ticket_card": ticket.id}}
    assert "🆕" in (await posted_params(board, post))["text"]
    await Ticket.filter(id=ticket.id).update(status=TicketStatus.ACCEPTED)  # a colleague was faster
    later = await posted_params(board, post)
    assert "✅" in later["text"] and "🆕" not in later["text"]
    assert later["parse_mode"] == "HTML"


async def test_refused_card_offers_undo_and_closed_card_only_more(db):
    board = make_board()
    refused = await hostile_ticket("x", TicketStatus.REFUSED)
    _, markup = await board.render_card(refused.id)
    assert [b["text"] for row in markup["inline_keyboard"] for b in row] == ["↩️ Отменить отказ", "…"]
    closed = await hostile_ticket("y", TicketStatus.CLOSED)
    _, markup = await board.render_card(closed.id)
    assert [b["text"] for row in markup["inline_keyboard"] for b in row] == ["…"]
    text, _ = await board.render_card(closed.id)
    assert "Срок первой обработки нарушен" in telegram_view(text)


def test_callback_data_stays_within_64_bytes_for_the_largest_ids():
    from bot.callbacks import MAX_ID  # the largest ticket id the integer column holds

    for op in Op:
        assert len(TicketAction(op=op, ticket_id=MAX_ID).pack().encode()) <= 64
    for op in RefuseOp:
        for reason in Reason:
            assert len(RefuseAction(op=op, ticket_id=MAX_ID, reason=reason).pack().encode()) <= 64


def test_english_catalogue_covers_the_russian_one_where_it_matters():
    missing = sorted(k for k in RU if k not in EN and not k.startswith(("btn.more", "msg.notice", "card.evidence.reason")))
    assert missing == []
    with pytest.raises(KeyError):
        t("no.such.key", "en")


@pytest.mark.parametrize(
    ("count", "ru", "en"),
    [
        (1, "новое обращение", "new request"),
        (21, "новое обращение", "new requests"),
        (2, "новых обращения", "new requests"),
        (24, "новых обращения", "new requests"),
        (11, "новых обращений", "new requests"),
        (12, "новых обращений", "new requests"),
        (111, "новых обращений", "new requests"),
        (0, "новых обращений", "new requests"),
        (25, "новых обращений", "new requests"),
    ],
)
def test_plural_follows_each_languages_rules(count: int, ru: str, en: str):
    assert plural("noun.new_request", count, "ru") == ru
    assert plural("noun.new_request", count, "en") == en


def test_cut_utf16_never_splits_a_surrogate_pair():
    assert cut_utf16("a😀b", 2) == "a"
    assert cut_utf16("a😀b", 3) == "a😀"
    assert tg_escape("<&>\"'") == "&lt;&amp;&gt;\"'"


@settings(max_examples=examples(1000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.text(max_size=6000), subject=st.text(max_size=400), sender=st.text(max_size=200))
def test_any_text_renders_as_valid_telegram_html_within_the_limit(body, subject, sender):
    views = TelegramViews()
    text = views.render_fitted("followup", "ru", body=body, title=t("msg.followup", "ru", n=1), sender=sender[:200],
                               subject=subject[:300], notes=[subject[:300]], attachments=sender)
    plain, _ = parse_html(text, strict_entities=True)
    assert utf16_len(plain.strip()) <= MAX_TEXT_LENGTH
    assert visible_len(text) == utf16_len(plain.strip())


@pytest.mark.parametrize("language", ["ru", "en"])
def test_sla_notices_render_within_limits(language):
    board = make_board(language)
    alert = board.notice_text("sla_alert", {"ticket_id": 5, "breached": True, "client": "<ООО>", "subject": "&" * 5000,
                                            "time_left": "просрочено на 2 ч", "mention": "@alice"})
    assert "#5" in telegram_view(alert)
    items = [{"ticket_id": i, "subject": "<x>" * 100, "time_left": "1 h"} for i in range(30)]
    digest = telegram_view(board.notice_text("sla_digest", {"items": items, "date": "2026-11-25", "mention": "@bob"}))
    assert "#29" in digest
    telegram_view(board.notice_text("calendar_beyond_verified", {"year": 2028, "verified_through": 2027}))


def test_the_invisible_ranges_cover_every_format_character_python_knows() -> None:
    import re
    import sys
    import unicodedata

    from bot.board import INVISIBLE_RANGES, strip_invisible

    pattern = re.compile(f"[{INVISIBLE_RANGES}]")
    missing = [hex(c) for c in range(sys.maxunicode + 1)
               if unicodedata.category(chr(c)) == "Cf" and not pattern.fullmatch(chr(c))]
    assert missing == []
    # A ZWJ is kept only where it joins two emoji; Cyrillic, emoji with variation selectors stay intact.
    assert strip_invisible("Ива\u200dн 👩\u200d💻 ❤️\u200d🔥 \u202eабв") == "Иван 👩\u200d💻 ❤️\u200d🔥 абв"


@pytest.mark.parametrize("raw", [b"", b"   \r\n", b"no headers at all", b"Subject: x\r\n\r\nbody without From"])
def test_a_quarantine_notice_says_why_in_russian_with_no_english_detail(raw: bytes) -> None:
    """The parser's English detail ("no usable From address") stays in raw_mail.error; the Russian notice
    says the reason through i18n, and the code survives the trip back from a parse worker (pickle)."""
    import pickle

    from mail.parse import parse_message
    from models.inbound import MalformedMessage

    with pytest.raises(MalformedMessage) as caught:
        parse_message(raw)
    error = pickle.loads(pickle.dumps(caught.value))
    assert (error.code, str(error)) == (caught.value.code, str(caught.value)) and error.code != "unparseable"
    facts = {"raw_mail_id": 7, "reason": str(error), "size": len(raw), "stage": "parse", "code": error.code}
    text = telegram_view(make_board().notice_text("quarantined", facts))
    assert str(error) not in text and t(f"quarantine.{error.code}", "ru") in text, text
    english = telegram_view(make_board("en").notice_text("quarantined", facts))
    assert t(f"quarantine.{error.code}", "en") in english


def test_a_notice_of_a_mail_the_database_refused_names_the_error_class_only() -> None:
    facts = {"raw_mail_id": 8, "reason": "ValidationError: message_id: Length of 'zzz' 1000 > 255", "size": 10,
             "stage": "ingest", "code": "ingest", "error_type": "ValidationError"}
    text = telegram_view(make_board().notice_text("quarantined", facts))
    assert "не удалось зарегистрировать (ошибка ValidationError" in text and "Length of" not in text, text


def test_evidence_of_every_text_rule_reads_in_the_cards_language():
    """No English fragment in a Russian card (issue 17): reasons are codes the i18n layer words, the
    out-of-scope topic comes titled in both languages from its config, the client's words are quoted."""
    from bot.board import evidence_text
    from scripts.bench.policy_quality import Judge

    findings = [{"code": "unidentified", "evidence": {"reason": r, "from": "x@y.ru", "candidates": [1, 2]}}
                for r in ("sender_not_verified", "not_registered", "ambiguous_domain", "ambiguous_documents",
                          "address_and_document_disagree")]
    findings.append({"code": "out_of_scope", "evidence": {"reason": "inactive", "client_id": 1}})
    judge = Judge()
    for subject, text in (("Доработка", "Доработайте корзину в нашем магазине на Django."),
                          ("SSL", "Установите SSL-сертификат на наш сервер, пожалуйста."),
                          ("", "Вы идиоты! Напишите скрипт."), ("", "ну что, есть новости?")):
        findings += [{"code": code, "evidence": ev} for code, ev in judge.codes(subject, text).items()]
    assert {f["code"] for f in findings} >= {"unidentified", "out_of_scope", "profanity", "unclear"}
    for f in findings:
        ru = evidence_text(f, "ru")
        outside_quotes = "".join(part.split("»", 1)[-1] for part in ru.split("«"))
        assert not any("a" <= ch <= "z" for ch in outside_quotes), ru  # acronyms (SPF, DKIM) are fine
    django = next(f for f in findings if f["evidence"].get("topic") == "code")
    assert evidence_text(django, "ru").startswith("тема: программирование и код клиента; совпадения: «Django»")
    assert evidence_text(django, "en").startswith("topic: programming and the client's code; matched: «Django»")
    assert evidence_text(findings[2], "en") == "the domain is registered to several clients"
