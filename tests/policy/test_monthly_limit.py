import pytest

from models.policy import PolicyConfig, month_key
from models.policy.rules.monthly_limit import MonthlyLimitRule
from models.tables import TicketStatus

from .factories import codes, finding, make_client, make_message, store_ticket, utc, verdict_of


def test_month_key_uses_the_company_time_zone():
    assert month_key(utc(2026, 11, 30, 22, 30), "Europe/Moscow") == "2026-12"
    assert month_key(utc(2026, 11, 30, 20, 59), "Europe/Moscow") == "2026-11"
    assert month_key(utc(2026, 11, 30, 22, 30), "UTC") == "2026-11"


def test_month_key_refuses_naive_datetimes():
    from datetime import datetime

    with pytest.raises(ValueError):
        month_key(datetime(2026, 11, 1), "Europe/Moscow")


async def _three_in_november(client):
    for day in (2, 9, 16):
        await store_ticket(make_message(message_id=f"n{day}@romashka.ru", new_text=f"Вопрос номер {day}"),
                           utc(2026, 11, day, 9, 0), client=client)


async def test_fourth_request_in_a_month_exceeds_the_limit(db):
    client = await make_client()
    await _three_in_november(client)
    v = await verdict_of(make_message(), MonthlyLimitRule, at=utc(2026, 11, 20, 9, 0))
    f = finding(v, "monthly_limit")
    assert f.evidence == {"count": 4, "limit": 3, "month": "2026-11", "offer": "paid, by separate agreement"}
    assert v.month_count == 4 and v.refuse_reason == "monthly_limit"


async def test_third_request_is_within_the_limit(db):
    client = await make_client()
    for day in (2, 9):
        await store_ticket(make_message(message_id=f"n{day}@romashka.ru"), utc(2026, 11, day, 9, 0), client=client)
    v = await verdict_of(make_message(), MonthlyLimitRule, at=utc(2026, 11, 20, 9, 0))
    assert v.month_count == 3 and "monthly_limit" not in codes(v)


async def test_late_evening_utc_on_the_last_day_counts_for_the_next_month_in_moscow(db):
    client = await make_client()
    await _three_in_november(client)
    v = await verdict_of(make_message(), MonthlyLimitRule, at=utc(2026, 11, 30, 22, 30))
    assert v.month_count == 1 and "monthly_limit" not in codes(v)


async def test_stored_ticket_counts_only_those_before_it(db):
    client = await make_client()
    await _three_in_november(client)
    later = await store_ticket(make_message(message_id="late@romashka.ru"), utc(2026, 11, 25, 9, 0), client=client)
    early = await store_ticket(make_message(message_id="early@romashka.ru"), utc(2026, 11, 1, 9, 0), client=client)
    v_early = await verdict_of(make_message(message_id="early@romashka.ru"), MonthlyLimitRule,
                               at=utc(2026, 11, 1, 9, 0), ticket_id=early.id)
    v_late = await verdict_of(make_message(message_id="late@romashka.ru"), MonthlyLimitRule,
                              at=utc(2026, 11, 25, 9, 0), ticket_id=later.id)
    assert v_early.month_count == 1
    assert v_late.month_count == 5


async def test_flagged_tickets_and_optionally_refused_ones_do_not_count(db):
    client = await make_client()
    await store_ticket(make_message(message_id="d@romashka.ru"), utc(2026, 11, 2, 9, 0), client=client, counts=False)
    await store_ticket(make_message(message_id="r@romashka.ru"), utc(2026, 11, 3, 9, 0), client=client,
                       status=TicketStatus.REFUSED)
    v = await verdict_of(make_message(), MonthlyLimitRule, at=utc(2026, 11, 20, 9, 0))
    assert v.month_count == 2
    v = await verdict_of(make_message(), MonthlyLimitRule, at=utc(2026, 11, 20, 9, 0),
                         config=PolicyConfig(count_refused=False))
    assert v.month_count == 1


async def test_other_clients_requests_do_not_count(db):
    client = await make_client()
    other = await make_client("АО «Лютик»", addresses=("@lutik.ru",))
    await _three_in_november(other)
    v = await verdict_of(make_message(), MonthlyLimitRule, at=utc(2026, 11, 20, 9, 0))
    assert v.client.client_id == client.id and v.month_count == 1


async def test_unidentified_sender_has_no_count(db):
    v = await verdict_of(make_message(from_address="x@gmail.com"), MonthlyLimitRule, at=utc(2026, 11, 20, 9, 0))
    assert v.month_count == 0 and "monthly_limit" not in codes(v)
