"""The command views (/queue, /ticket, /client, /stats, /search): database in, Telegram HTML out, always within
Telegram's limits (`TelegramViews.render_list` drops items from the end until the text fits)."""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

from markupsafe import Markup
from tortoise.expressions import Q

from bot.board import SAFE_LIMIT, TelegramBoard, button, keyboard, short, strip_invisible
from bot.callbacks import Op, TicketAction
from bot.i18n import RU, reason_label, t
from bot.text import visible_len
from models.assignment import OPEN_STATUSES, staff_label
from models.clock import as_utc
from models.policy import month_key
from models.search import SearchResult
from models.sla_rules import format_time_left
from models.tables import (
    Client,
    Decision,
    Message,
    MessageDirection,
    StaffMember,
    Ticket,
    TicketStatus,
)

OPEN = (TicketStatus.NEW, TicketStatus.ACCEPTED)


async def queue_view(board: TelegramBoard, mine: StaffMember | None = None) -> str:
    """The waiting requests in order of arrival (2.3), the unassigned ones first and the rest marked with
    their assignee; with `mine`, that colleague's open tickets instead."""
    lang = board.lang
    now = board.clock()
    if mine is not None:
        query = Ticket.filter(assignee_id=mine.id, status__in=OPEN_STATUSES)
    else:
        query = Ticket.filter(status=TicketStatus.NEW)
    tickets = await query.order_by("arrived_at", "arrival_uid", "id").limit(200)
    total = await query.count()
    if not tickets:
        empty = "queue.mine_empty" if mine is not None else "cmd.queue_empty"
        return board.views.render("notice", lang, text=t(empty, lang))
    tickets.sort(key=lambda x: x.assignee_id is not None)  # stable: arrival order within each part
    clients = {c.id: c.name for c in await Client.filter(id__in={x.client_id for x in tickets if x.client_id})}
    holders = {s.id: staff_label(s) for s in await StaffMember.filter(id__in={x.assignee_id for x in tickets
                                                                               if x.assignee_id})}
    items = [
        {
            "n": x.id,
            "arrived": board.when(x.arrived_at),
            "client": short(clients.get(x.client_id or 0) or x.sender_address, 60),
            "subject": short(x.subject, 80) or t("card.no_subject", lang),
            "left": format_time_left(board.calendar, now, as_utc(x.sla_due_at), lang)
            if x.sla_due_at and x.status == TicketStatus.NEW else t(f"status.{x.status}", lang),
            "holder": t("queue.assigned", lang, who=short(holders.get(x.assignee_id, "?"), 60))
            if x.assignee_id and mine is None else "",
        }
        for x in tickets
    ]
    return board.views.render_list("queue", lang, items, total=total, mine=mine is not None)


async def ticket_view(board: TelegramBoard, ticket_id: int) -> str:
    """The card as it is now, plus the audit trail (Decision rows, newest kept when space is short)."""
    lang = board.lang
    decisions = await Decision.filter(ticket_id=ticket_id).order_by("id")
    names = {s.id: s.name or s.username or str(s.telegram_id)
             for s in await StaffMember.filter(id__in={d.staff_id for d in decisions if d.staff_id})}
    items = [
        {
            "when": board.when(d.created_at),
            "what": (t(f"action.{d.action}", lang) if f"action.{d.action}" in RU else d.action)
            + (f" — {reason_label(d.reason, lang)}" if d.reason else ""),
            "who": short(names.get(d.staff_id or 0, ""), 60),
            "comment": short(d.comment, 100),
        }
        for d in decisions
    ]
    thread = await Message.filter(ticket_id=ticket_id).exclude(direction=MessageDirection.NOTE).count()
    for keep in (12, 5, 0):
        shown = items[-keep:] if keep else []
        more = t("more_items", lang, n=len(items) - len(shown)) if len(shown) < len(items) else ""
        history = board.views.render("ticket", lang, items=shown, more=more, card="", thread=thread)
        card, _ = await board.render_card(ticket_id, limit=SAFE_LIMIT - visible_len(history) - 4)
        text = board.views.render("ticket", lang, items=shown, more=more, card=Markup(card), thread=thread)
        if visible_len(text) <= SAFE_LIMIT:
            return text
    return board.views.render("ticket", lang, items=[], more="", card="", thread=thread)


HISTORY_SIZE = 10  # the client's last requests shown by /client and the card's "Client history"
MAX_BUTTONS = 100  # Telegram's inline keyboard: about 100 buttons a message
BUTTONS_PER_ROW = 5


async def client_view(board: TelegramBoard, query: str) -> str:
    text, _ = await client_view_with_buttons(board, query)
    return text


async def client_view_with_buttons(board: TelegramBoard, query: str) -> tuple[str, dict[str, Any] | None]:
    """/client TEXT: the clients found, each with its last requests; a button per request opens it."""
    lang = board.lang
    q = query.strip()
    cond = Q(inn=q) | Q(contract__icontains=q) | Q(addresses__value__icontains=q.lower())
    # SQLite's LIKE folds ASCII case only: try the usual spellings of a Cyrillic name as well.
    for variant in {q, q.lower(), q.upper(), q.capitalize(), q.title()}:
        cond |= Q(name__icontains=variant)
    clients = await Client.filter(cond).distinct().order_by("name").limit(20)
    if not clients:
        return board.views.render("notice", lang, text=t("cmd.no_client", lang)), None
    items = [await _client_item(board, c) for c in clients]
    text = board.views.render_list("client", lang, items, query=short(q, 100), limit=board.config.monthly_limit)
    return text, _history_buttons(items)


async def client_history_view(board: TelegramBoard, ticket_id: int) -> tuple[str, dict[str, Any] | None]:
    """The card's "Client history": the ticket's client as /client shows it; a sender no client matched
    is shown by address (their requests from that address)."""
    ticket = await Ticket.get_or_none(id=ticket_id)
    if ticket is None:
        return board.views.render("notice", board.lang, text=t("ans.not_found", board.lang)), None
    client = await Client.get_or_none(id=ticket.client_id) if ticket.client_id else None
    item = await _client_item(board, client) if client else await _sender_item(board, ticket.sender_address)
    text = board.views.render_list("client", board.lang, [item], query="", limit=board.config.monthly_limit)
    return text, _history_buttons([item])


async def _client_item(board: TelegramBoard, c: Client) -> dict[str, Any]:
    month = month_key(board.clock(), board.config.timezone)
    addresses = await c.addresses.all().values_list("value", flat=True)
    month_count = await Ticket.filter(client_id=c.id, month_key=month, counts_toward_limit=True).count()
    open_ids = await Ticket.filter(client_id=c.id, status__in=OPEN).order_by("id").values_list("id", flat=True)
    return {
        "name": short(c.name, 150),
        "inn": c.inn or "",
        "contract": short(c.contract or "", 60),
        "active": c.active,
        "addresses": short(", ".join(addresses), 300),
        "month_count": month_count,
        "open": ", ".join(f"#{i}" for i in open_ids[:20]),
        "history": await _history(board, Ticket.filter(client_id=c.id)),
    }


async def _sender_item(board: TelegramBoard, address: str) -> dict[str, Any]:
    month = month_key(board.clock(), board.config.timezone)
    mine = Ticket.filter(sender_address=address, client_id=None)
    open_ids = await mine.filter(status__in=OPEN).order_by("id").values_list("id", flat=True)
    return {
        "name": short(address, 150) or "—", "inn": "", "contract": "", "active": True, "addresses": "",
        "month_count": await mine.filter(month_key=month, counts_toward_limit=True).count(),
        "open": ", ".join(f"#{i}" for i in open_ids[:20]),
        "history": await _history(board, Ticket.filter(sender_address=address, client_id=None)),
    }


async def _history(board: TelegramBoard, tickets: Any) -> list[dict[str, Any]]:
    """The last HISTORY_SIZE requests (auto-replies recorded as tickets have no SLA: not requests)."""
    rows = await tickets.exclude(sla_due_at=None).order_by("-arrived_at", "-id").limit(HISTORY_SIZE).values(
        "id", "arrived_at", "status", "subject")
    return [{"id": r["id"], "date": board.when(r["arrived_at"]).split(" ")[0],
             "status": t(f"status.{r['status']}", board.lang), "subject": short(r["subject"] or "", 60)}
            for r in rows]


def _history_buttons(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A "#N" button per request listed, opening it like /ticket N (Op.OPEN), within Telegram's limit."""
    ids = [h["id"] for it in items for h in it.get("history", [])][:MAX_BUTTONS]
    if not ids:
        return None
    buttons = [button(f"#{i}", TicketAction(op=Op.OPEN, ticket_id=i)) for i in ids]
    return keyboard([buttons[i:i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW)])


async def stats_view(board: TelegramBoard, month: str) -> str:
    lang = board.lang
    rows = await Ticket.filter(month_key=month).values(
        "id", "status", "refuse_reason", "sla_due_at", "first_decided_at"
    )
    ids = [r["id"] for r in rows]
    actions: Counter[str] = Counter()
    if ids:
        for d in await Decision.filter(ticket_id__in=ids, action__in=["accepted", "answered_faq"]).values(
            "ticket_id", "action"
        ):
            actions[d["action"]] += 1
    # Auto-replies recorded as closed tickets without an SLA are not requests.
    requests = [r for r in rows if r["sla_due_at"] is not None]
    refused = Counter(r["refuse_reason"] for r in requests if r["status"] == TicketStatus.REFUSED)
    decided = [r for r in requests if r["first_decided_at"] is not None]
    met = sum(1 for r in decided if as_utc(r["first_decided_at"]) <= as_utc(r["sla_due_at"]))
    sla = f"{round(100 * met / len(decided))}% ({met}/{len(decided)})" if decided else t("stats.no_data", lang)
    return board.views.render(
        "stats",
        lang,
        month=month,
        received=len(requests),
        accepted=actions["accepted"],
        refused=sum(refused.values()),
        reasons=[{"label": reason_label(r or "?", lang), "count": n} for r, n in refused.most_common()],
        faq=actions["answered_faq"],
        closed=sum(1 for r in requests if r["status"] == TicketStatus.CLOSED),
        waiting=sum(1 for r in requests if r["status"] == TicketStatus.NEW),
        sla=sla,
    )




def search_view(board: TelegramBoard, query: str, result: SearchResult) -> tuple[str, dict[str, Any] | None]:
    """The answer to /search: the usage, "nothing found", or the hits (newest first) with a button to
    open each ticket (the /ticket view)."""
    lang = board.lang
    if result.query.empty:
        return board.views.render("notice", lang, text=t("cmd.usage_search", lang)), None
    if not result.hits:
        return board.views.render("notice", lang, text=t("search.nothing", lang, query=short(query, 100))), None
    items = [
        {
            "n": hit.ticket_id,
            "status": t(f"status.{hit.status.value}", lang),
            "date": board.when(hit.arrived_at),
            "client": short(hit.client, 60),
            "snippet": _snippet_html(hit.snippet),
        }
        for hit in result.hits
    ]
    newest = t("search.newest", lang, n=len(items)) if result.more else ""
    text = board.views.render_list("search", lang, items, query=short(query, 100), newest=newest)
    buttons = [button(t("btn.open", lang, n=hit.ticket_id), TicketAction(op=Op.OPEN, ticket_id=hit.ticket_id))
               for hit in result.hits]
    return text, keyboard([buttons[i:i + 2] for i in range(0, len(buttons), 2)])


def _snippet_html(pieces: tuple[tuple[str, bool], ...]) -> Markup:
    """A snippet in Telegram HTML: the client's words escaped, the hits in bold."""
    return Markup("".join(f"<b>{_escape(piece)}</b>" if hit else _escape(piece) for piece, hit in pieces))


def _escape(text: str) -> str:
    return html.escape(strip_invisible(text), quote=False)
