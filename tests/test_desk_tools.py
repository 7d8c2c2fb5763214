"""The desk tools' use cases on the test database (issue 20): saved replies, take and assign, merge.
The chat side (commands, buttons, cards) is proved through the real process in test_desk_tools_process.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.assignment import Assignments
from models.merging import Merger
from models.saved_replies import VARIABLES, SavedReplies, SavedReplyError, check, fill, load_file
from models.search import search_tickets
from models.tables import Decision, EmailOutbox, Message, StaffMember, TelegramOutbox, Ticket, TicketStatus
from tests.helpers.desk import Desk, email_text, make_email


async def member(telegram_id: int, name: str, username: str, *, started: bool = False) -> StaffMember:
    staff, _ = await StaffMember.get_or_create(
        telegram_id=telegram_id, defaults={"name": name, "username": username, "started_bot": started}
    )
    return staff


# Saved replies -------------------------------------------------------------------------------------
def test_an_unknown_variable_is_refused_with_its_name() -> None:
    with pytest.raises(SavedReplyError) as error:
        check("greeting", "Здравствуйте, {clinet}! Обращение {ticket}.")
    assert error.value.code == "unknown_variables"
    assert error.value.detail == "clinet"
    for bad in ("Скидка {", "{client.name}", "{client!r}", "{ticket:>5}", "{}"):
        with pytest.raises(SavedReplyError) as error:
            check("x", bad)
        assert error.value.code == "bad_syntax", bad
    assert check("Пароль-1", "Ваш {client}, {{литерал}}") == "пароль-1"
    with pytest.raises(SavedReplyError):
        check("два слова", "текст")


def test_values_are_inserted_as_text_never_parsed_again() -> None:
    text = fill("{client}: {{ticket}} {ticket}", {"client": "ООО {ticket} {0}", "ticket": "7"})
    assert text == "ООО {ticket} {0}: {ticket} 7"
    assert set(VARIABLES) == {"client", "contact", "ticket", "deadline", "agent", "faq_links"}


def test_the_file_loads_checked_replies_and_names_the_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "replies.toml"
    good.write_text('[Password]\ntext = "Пароль для {client} сброшен."\n', encoding="utf-8")
    replies = load_file(good)
    assert replies["password"].text == "Пароль для {client} сброшен." and replies["password"].from_file
    bad = tmp_path / "bad.toml"
    bad.write_text('[oops]\ntext = "Здравствуйте, {name}"\n', encoding="utf-8")
    with pytest.raises(SavedReplyError) as error:
        load_file(bad)
    assert "[oops]" in error.value.detail and "name" in error.value.detail
    assert load_file(tmp_path / "missing.toml") == {}


async def test_a_saved_reply_reaches_the_client_with_its_variables_in_the_ticket_thread(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(subject="Сбросить пароль"))
        alice = await member(Desk.ALICE, "Алиса", "alice")
        desk.desk.saved_replies = SavedReplies()
        await desk.desk.saved_replies.save(
            "Password", "{contact}, пароль по обращению №{ticket} сброшен. Срок: {deadline}. {agent}", alice
        )
        outcome = await desk.desk.send_saved_reply(ticket.id, alice, "password", key="q1")
        assert outcome.ok
        again = await desk.desk.send_saved_reply(ticket.id, alice, "password", key="q1")  # a redelivered press
        assert again.status == "already"
        emails = await EmailOutbox.filter(ticket_id=ticket.id, event="staff_reply")
        assert len(emails) == 1
        text = email_text(emails[0])
        assert f"Иван Петров, пароль по обращению №{ticket.id} сброшен." in text
        assert "Алиса" in text and "{" not in text
        deadline = (await Ticket.get(id=ticket.id)).sla_due_at
        assert deadline is not None and desk.desk._local_date(deadline) in text
        decision = await Decision.get(ticket_id=ticket.id, action="replied")
        assert decision.staff_id == alice.id and decision.details == {"saved_reply": "password"}
        missing = await desk.desk.send_saved_reply(ticket.id, alice, "nope", key="q2")
        assert missing.status == "invalid" and missing.detail == "no_reply:nope"


async def test_chat_replies_hide_the_files_and_file_replies_cannot_be_deleted(db: str) -> None:
    replies = SavedReplies({"faq": load_file_text("Смотрите {faq_links}")})
    alice = await member(Desk.ALICE, "Алиса", "alice")
    _, replaced = await replies.save("FAQ", "Своя версия для {client}", alice)
    assert replaced
    assert [(r.name, r.text) for r in await replies.all()] == [("faq", "Своя версия для {client}")]
    await replies.delete("faq")
    assert [(r.name, r.from_file) for r in await replies.all()] == [("faq", True)]
    with pytest.raises(SavedReplyError) as error:
        await replies.delete("faq")
    assert error.value.code == "from_file"
    with pytest.raises(SavedReplyError) as error:
        await replies.delete("unknown")
    assert error.value.code == "not_found"


def load_file_text(text: str):  # noqa: ANN201
    from models.saved_replies import Reply

    return Reply("faq", text, from_file=True)


# Take and assign -----------------------------------------------------------------------------------
async def test_take_assign_and_unassign_change_the_holder_once_each_with_an_audit(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email())
        alice = await member(Desk.ALICE, "Алиса", "alice")
        bob = await member(Desk.BOB, "Борис", "bob", started=True)
        tools = Assignments(desk.effects, desk.desk.clock)
        assert (await tools.take(ticket.id, alice)).ok
        assert (await tools.take(ticket.id, alice)).status == "already"
        handed = await tools.assign(ticket.id, bob, by=alice)
        assert handed.ok and handed.detail == "Борис"
        assert (await Ticket.get(id=ticket.id)).assignee_id == bob.id
        # Bob started the bot: he is told in his private chat; the card is edited on each change.
        dms = await TelegramOutbox.filter(chat_id=Desk.BOB)
        assert len(dms) == 1
        assert dms[0].payload["event"] == "assigned_to_you" and dms[0].payload["facts"]["ticket_id"] == ticket.id
        assert not dms[0].payload["reply_to_card"]  # the card is not in his private chat
        assert (await tools.assign(ticket.id, None, by=alice)).ok
        assert (await Ticket.get(id=ticket.id)).assignee_id is None
        actions = await Decision.filter(ticket_id=ticket.id).order_by("id").values_list("action", flat=True)
        assert [a for a in actions if a.endswith("assigned")] == ["assigned", "assigned", "unassigned"]
        assert await TelegramOutbox.filter(idempotency_key__startswith="edit:assigned:").count() == 2
        assert "Борис" not in await desk.card_text(ticket.id)


async def test_a_closed_ticket_cannot_change_hands_and_a_leaver_returns_theirs_to_the_queue(db: str) -> None:
    async with Desk.open() as desk:
        first = await desk.deliver(make_email(subject="Первое"))
        second = await desk.deliver(make_email(subject="Второе", sender="olga@vesna.ru"))
        alice = await member(Desk.ALICE, "Алиса", "alice")
        bob = await member(Desk.BOB, "Борис", "bob")
        tools = Assignments(desk.effects, desk.desk.clock)
        await tools.assign(first.id, bob, by=alice)
        await tools.assign(second.id, bob, by=alice)
        await desk.desk.close(second.id, alice)
        closed = await tools.assign(second.id, alice, by=alice)
        assert closed.status == "invalid" and closed.detail == "closed"
        assert await tools.release_member(bob) == [first.id]  # the closed one stays in its history
        assert (await Ticket.get(id=first.id)).assignee_id is None
        notice = await TelegramOutbox.get(idempotency_key__startswith="returned:")
        assert notice.payload["event"] == "returned_to_queue" and notice.payload["facts"]["tickets"] == [first.id]
        assert await tools.release_member(bob) == []


# Merge ---------------------------------------------------------------------------------------------
async def test_merge_moves_the_messages_closes_the_source_and_later_mail_lands_on_the_target(db: str) -> None:
    async with Desk.open() as desk:
        target = await desk.deliver(make_email(subject="Не работает выгрузка"))
        source = await desk.deliver(make_email(subject="Ещё про выгрузку", body="Всё ещё ошибка 502, см. скрин."))
        alice = await member(Desk.ALICE, "Алиса", "alice")
        await desk.desk.accept(source.id, alice, confirmed=True)  # an email went out from the source
        sent = (await EmailOutbox.filter(ticket_id=source.id, event="accepted"))[0]
        outcome = await Merger(desk.effects, desk.desk.clock).merge(source.id, target.id, alice)
        assert outcome.ok
        merged = await Ticket.get(id=source.id)
        assert merged.status == TicketStatus.MERGED and merged.merged_into_id == target.id
        assert not merged.counts_toward_limit
        assert await Message.filter(ticket_id=source.id).count() == 0
        texts = await Message.filter(ticket_id=target.id).order_by("id").values_list("subject", flat=True)
        assert "Ещё про выгрузку" in texts
        emails_before = await EmailOutbox.filter(event__not="acknowledged").count()
        # The client answers our email from the source: it lands on the target, and so does the [#N] tag.
        reply = await desk.deliver(make_email(subject=f"Re: Ещё про выгрузку [#{source.id}]",
                                              in_reply_to=sent.message_id, body="Спасибо, жду."))
        assert reply.id == target.id
        tagged = await desk.deliver(make_email(subject=f"Re: [#{source.id}] снова", body="И ещё вопрос."))
        assert tagged.id == target.id
        assert await EmailOutbox.filter(event__not="acknowledged").count() == emails_before  # no email about it
        # A reply typed on the merged card goes to the target.
        replied = await desk.desk.reply(source.id, alice, "Проверили.", key="tg:1")
        assert replied.ok and replied.ticket_id == target.id
        assert "#" + str(target.id) in await desk.card_text(source.id)


async def test_a_merged_tickets_words_find_the_ticket_it_was_merged_into(db: str) -> None:
    async def found(text: str) -> list[int]:
        return [hit.ticket_id for hit in (await search_tickets(text)).hits]

    async with Desk.open() as desk:
        target = await desk.deliver(make_email(subject="Не работает выгрузка", body="Выгрузка остатков встала.",
                                               message_id="first@romashka.ru"))
        source = await desk.deliver(make_email(subject="Накладные", body="Пропали накладные, ошибка 502."))
        other = await desk.deliver(make_email(subject="Тоже накладные", body="Накладные не печатаются.",
                                              sender="olga@vesna.ru"))
        alice = await member(Desk.ALICE, "Алиса", "alice")
        assert await found("ошибка 502") == [source.id]
        assert (await Merger(desk.effects, desk.desk.clock).merge(source.id, target.id, alice)).ok
        assert await found("ошибка 502") == [target.id]  # the source's words, on the target now
        assert await found("накладная") == [other.id, target.id]
        assert await found("выгрузка остатков") == [target.id]  # the target's own words stay
        assert await found("накладные остатков") == [target.id]  # one word of each, one ticket now
        later = await desk.deliver(make_email(subject="Re: Не работает выгрузка", body="Ещё и акты сверки.",
                                              in_reply_to="first@romashka.ru"))
        assert later.id == target.id and await found("акт 502") == [target.id]  # later words join the merged ones


async def test_merge_refuses_itself_a_merged_target_and_asks_before_crossing_clients(db: str) -> None:
    async with Desk.open() as desk:
        a = await desk.deliver(make_email(subject="A"))
        b = await desk.deliver(make_email(subject="B"))
        other = await desk.deliver(make_email(subject="C", sender="olga@vesna.ru"))
        alice = await member(Desk.ALICE, "Алиса", "alice")
        merger = Merger(desk.effects, desk.desk.clock)
        assert (await merger.merge(a.id, a.id, alice)).detail == "self"
        assert (await merger.merge(a.id, 10_000, alice)).detail == "not_found:10000"
        assert (await merger.merge(b.id, a.id, alice)).ok
        into_merged = await merger.merge(other.id, b.id, alice)
        assert into_merged.status == "invalid" and into_merged.detail == f"into_merged:{a.id}"
        assert (await merger.merge(b.id, other.id, alice)).status == "already"
        asked = await merger.merge(other.id, a.id, alice)
        assert asked.status == "needs_confirmation" and asked.detail == "other_client"
        assert (await Ticket.get(id=other.id)).status == TicketStatus.NEW
        assert (await merger.merge(other.id, a.id, alice, confirmed=True)).ok


async def test_accepting_keeps_the_holder_and_assigns_the_presser_only_when_nobody_holds_it(db: str) -> None:
    async with Desk.open() as desk:
        held = await desk.deliver(make_email(subject="Взято Борисом"))
        free = await desk.deliver(make_email(subject="Ничьё", sender="olga@vesna.ru"))
        alice = await member(Desk.ALICE, "Алиса", "alice")
        bob = await member(Desk.BOB, "Борис", "bob")
        await desk.desk.assignments.take(held.id, bob)
        assert (await desk.desk.accept(held.id, alice, confirmed=True)).ok
        assert (await desk.desk.accept(free.id, alice, confirmed=True)).ok
        assert (await Ticket.get(id=held.id)).assignee_id == bob.id
        assert (await Ticket.get(id=free.id)).assignee_id == alice.id
