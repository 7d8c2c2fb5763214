"""One decision per request, at the desk level (models/desk.py): accept, refuse and the FAQ answer are taken only from
the waiting state by a conditional update, so of two agents pressing at nearly the same time exactly one
decides (one Decision row, one email) and the other learns who decided first. Refusing an accepted request
is its own action (`withdraw_acceptance_and_refuse`), guarded the same way from the accepted state.

Concurrent tasks on one Desk (models/desk.py) and one database (SQLite, and PostgreSQL with TEST_DATABASE_URL): the
second task is started 1 to thousands of event-loop turns after the first, so some pairs overlap inside the guarded
update and others arrive just after the first decision committed (the "stale button" case)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tortoise.queryset import QuerySet

from models.desk import Desk as StaffDesk
from models.desk import Outcome
from models.tables import Decision, EmailOutbox, OutboxStatus, StaffMember, Ticket, TicketStatus
from tests.helpers.desk import Desk, email_text, make_email
from tests.policy.factories import make_client

DECISIONS = ("accepted", "refused", "refused_after_acceptance", "answered_faq")


def decision_emails(ticket_id: int) -> QuerySet[EmailOutbox]:
    """The emails the decisions queued: each request's acknowledgement (tests/test_acknowledgement.py) aside."""
    return EmailOutbox.filter(ticket_id=ticket_id).exclude(event="acknowledged")


async def two_members() -> tuple[StaffMember, StaffMember]:
    alice, _ = await StaffMember.get_or_create(telegram_id=Desk.ALICE, defaults={"name": "Алиса", "username": "alice"})
    bob, _ = await StaffMember.get_or_create(telegram_id=Desk.BOB, defaults={"name": "Борис", "username": "bob"})
    return alice, bob


async def after_turns(turns: int, action: Callable[[], Awaitable[Outcome]]) -> Outcome:
    for _ in range(turns):
        await asyncio.sleep(0)
    return await action()


async def race(first: Callable[[], Awaitable[Outcome]], second: Callable[[], Awaitable[Outcome]],
               turns: int) -> list[Outcome]:
    return list(await asyncio.gather(after_turns(0, first), after_turns(turns, second)))


async def decisions_of(ticket_id: int) -> list[Decision]:
    return await Decision.filter(ticket_id=ticket_id, action__in=DECISIONS).order_by("id")


async def tickets(desk: Desk, count: int, **mail: Any) -> list[Ticket]:
    out = []
    for i in range(count):
        fields = {"body": f"Не работает выгрузка заказов, случай {i}, код {i * 7919}.", "subject": f"Выгрузка {i}"}
        ticket = await desk.deliver(make_email(**(fields | mail)))
        assert ticket is not None
        out.append(ticket)
    return out


def check_loser(outcomes: list[Outcome], winner: Decision, names: dict[int, str], status: str) -> None:
    """Exactly one press decided; the other was told who decided first (the winner's name and time)."""
    done = [o for o in outcomes if o.ok]
    lost = [o for o in outcomes if not o.ok]
    assert len(done) == 1 and len(lost) == 1, [o.status for o in outcomes]
    assert lost[0].status == "already" and lost[0].decided is not None
    assert lost[0].decided.status == status
    assert lost[0].decided.staff_name == names[winner.staff_id or 0]
    assert lost[0].decided.action == winner.action


async def test_accept_and_refuse_pressed_together_take_exactly_one_decision_and_one_email(db: str) -> None:
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open() as desk:
        alice, bob = await two_members()
        names = {alice.id: "Алиса", bob.id: "Борис"}
        staff_desk: StaffDesk = desk.desk
        batch = await tickets(desk, 16)
        results = []
        for n, ticket in enumerate(batch):
            accept = lambda t=ticket: staff_desk.accept(t.id, alice, confirmed=True)  # noqa: E731
            refuse = lambda t=ticket: staff_desk.refuse(t.id, bob, "out_of_scope")  # noqa: E731
            # Even tickets: Accept first, Refuse 2**n loop turns later (from overlapping to well after the
            # first committed); odd ones the other way round.
            first, second = (accept, refuse) if n % 2 == 0 else (refuse, accept)
            results.append((ticket, await race(first, second, turns=2 ** n)))
        counts = {t.id: (len(await decisions_of(t.id)), await decision_emails(t.id).count())
                  for t in batch}
        assert counts == {t.id: (1, 1) for t in batch}  # one decision and one email per request
        for ticket, outcomes in results:
            (winner,) = await decisions_of(ticket.id)
            status = "accepted" if winner.action == "accepted" else "refused"
            check_loser(outcomes, winner, names, status)
            assert (await Ticket.get(id=ticket.id)).status == status
            (email,) = await decision_emails(ticket.id)
            assert email.event == ("accepted" if status == "accepted" else "refused_out_of_scope")


async def test_two_accepts_or_an_accept_and_a_faq_answer_take_one_decision(db: str) -> None:
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open() as desk:
        alice, bob = await two_members()
        names = {alice.id: "Алиса", bob.id: "Борис"}
        staff_desk: StaffDesk = desk.desk
        faq = await tickets(desk, 7, subject="Забыл пароль",
                            body="Добрый день! Не могу войти, как восстановить пароль от кабинета?")
        results = []
        for n, ticket in enumerate(faq):
            answer = lambda t=ticket: staff_desk.answer_faq(t.id, bob)  # noqa: E731
            accept = lambda t=ticket, who=alice: staff_desk.accept(t.id, who, confirmed=True)  # noqa: E731
            second = (lambda t=ticket: staff_desk.accept(t.id, bob, confirmed=True)) if n % 3 == 2 else answer  # noqa: E731
            results.append((ticket, await race(accept, second, turns=5 ** n)))
        counts = {t.id: (len(await decisions_of(t.id)), await decision_emails(t.id).count())
                  for t in faq}
        assert counts == {t.id: (1, 1) for t in faq}
        for ticket, outcomes in results:
            (winner,) = await decisions_of(ticket.id)
            status = {"accepted": "accepted", "answered_faq": "answered"}[winner.action]
            check_loser(outcomes, winner, names, status)


async def test_a_plain_refusal_never_follows_an_acceptance(db: str) -> None:
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open() as desk:
        alice, bob = await two_members()
        (ticket,) = await tickets(desk, 1)
        assert (await desk.desk.accept(ticket.id, alice, confirmed=True)).ok
        late = await desk.desk.refuse(ticket.id, bob, "profanity", comment="поздно")
        assert late.status == "already" and late.decided is not None
        assert (late.decided.status, late.decided.staff_name) == ("accepted", "Алиса")
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.ACCEPTED
        assert [e.event for e in await decision_emails(ticket.id)] == ["accepted"]
        assert [d.action for d in await decisions_of(ticket.id)] == ["accepted"]
        # A FAQ answer is a first decision too: not on an accepted request either.
        assert (await desk.desk.answer_faq(ticket.id, bob)).status in ("already", "invalid")


async def test_withdrawing_an_acceptance_is_its_own_guarded_decision_and_can_be_undone(db: str) -> None:
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open() as desk:
        alice, bob = await two_members()
        names = {alice.id: "Алиса", bob.id: "Борис"}
        staff_desk: StaffDesk = desk.desk
        batch = await tickets(desk, 8)
        # Only from the accepted state: a waiting request is refused with the plain action.
        assert (await staff_desk.withdraw_acceptance_and_refuse(batch[0].id, bob, "out_of_scope")).status == "not_accepted"
        for n, ticket in enumerate(batch):
            assert (await staff_desk.accept(ticket.id, alice, confirmed=True)).ok
            accepted_at = (await Ticket.get(id=ticket.id)).first_decided_at
            withdraw = lambda t=ticket: staff_desk.withdraw_acceptance_and_refuse(t.id, bob, "out_of_scope")  # noqa: E731
            again = lambda t=ticket: staff_desk.withdraw_acceptance_and_refuse(t.id, alice, "profanity")  # noqa: E731
            plain = lambda t=ticket: staff_desk.refuse(t.id, alice, "profanity")  # noqa: E731
            outcomes = await race(withdraw, again if n % 2 else plain, turns=3 ** n)
            rows = await decisions_of(ticket.id)
            assert [d.action for d in rows] == ["accepted", "refused_after_acceptance"]
            winner = rows[-1]
            done = [o for o in outcomes if o.ok]
            lost = [o for o in outcomes if not o.ok]
            assert len(done) == 1 and len(lost) == 1
            # A plain refusal that lost says "already accepted" or "already refused", depending on when it
            # read the state; a second withdrawal always finds the refusal.
            assert lost[0].status == "already" and lost[0].decided is not None
            assert lost[0].decided.staff_name in names.values()
            assert winner.details["previous_status"] == "accepted"
            assert winner.details["withdrawn"]["by"] == "Алиса"
            emails = await decision_emails(ticket.id).order_by("id")
            assert [e.event for e in emails][0] == "accepted" and len(emails) == 2
            withdrawal = emails[1]
            assert withdrawal.idempotency_key == f"withdraw:{winner.id}"
            assert "отзываем принятие" in email_text(withdrawal)

            # Undo within the grace period: the withdrawal email is cancelled, the acceptance stands as it was.
            assert (await staff_desk.undo_refusal(ticket.id, bob)).ok
            back = await Ticket.get(id=ticket.id)
            assert back.status == TicketStatus.ACCEPTED and back.first_decided_at == accepted_at
            assert (await EmailOutbox.get(id=withdrawal.id)).status == OutboxStatus.CANCELLED
