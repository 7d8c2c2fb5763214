"""2.6: duplicated messages (a re-send, or the same mail sent to several of our addresses).

Three checks, strongest first; the first that matches links the request to the original ticket:
(a) message_id: the Message-ID (or Resent-Message-ID) is already stored on another ticket; this is
    also how one mail addressed to several of our addresses shows up twice;
(b) exact: the same `content_hash` (sender, subject without Re:/Fwd:/[#N], normalised new text,
    attachment hashes);
(c) near: the new text is at least `near_duplicate_ratio` similar AND carries the same facts
    (numbers, dates, amounts, addresses, links, attachments). Differing facts mean a new request
    written from the same template (another invoice), which is not a duplicate.
(b) and (c) look only at earlier requests of the same client (or the same sender when the client is
unknown) that arrived within `duplicate_window_days` or are still open.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from rapidfuzz import fuzz

from models.inbound import InboundMessage
from models.policy.base import (
    POLICY_TEXT_CHARS,
    Finding,
    FindingCode,
    PolicyContext,
    PolicyData,
    PolicyRequest,
    Rule,
)
from models.policy.records import PriorTicket, SeenMessage
from models.text_scan import RunScan

_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:re|fwd?|fw|aw|wg|отв|ответ|пересл|переслать)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.IGNORECASE)
_TICKET_TAG = re.compile(r"\[#\s*\d+\]")
# Scanned with RunScan: `re` alone retries the address pattern from every character of a long word,
# quadratic in the word's length (issue 16: a 40 KB single-line body took 7.7 s here).
_EMAIL = RunScan.run(r"[\w.+-]", r"@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# Numbers with inner separators: "12 500,00" is taken as "12", "500,00" — consistent on both sides.
_NUMBER = re.compile(r"\d+(?:[.,/:\-]\d+)*")
# The near check compares the first NEAR_COMPARE_CHARS characters of two new texts. Similarity (rapidfuzz's
# bit-parallel LCS) costs time in proportion to the product of the lengths: 16 K characters take about
# 25 ms a pair, 64 K 0.4 s, 200 K 5 s, and a request is compared with up to 50 candidates. A re-send is
# recognisable from its first 16 K characters (some 2,500 words); the facts are still compared over
# POLICY_TEXT_CHARS, and whole texts whose lengths alone rule out the threshold are never near copies.
NEAR_COMPARE_CHARS = 16 * 1024
# Near checks whose texts add up to more than this run in a thread (rapidfuzz releases the GIL): the event
# loop goes on serving updates meanwhile. Smaller ones, every ordinary request, stay inline (no thread hop).
NEAR_INLINE_CHARS = 64 * 1024


def normalise_subject(subject: str) -> str:
    s = _TICKET_TAG.sub(" ", subject)
    while True:
        stripped = _SUBJECT_PREFIX.sub("", s)
        if stripped == s:
            break
        s = stripped
    return " ".join(s.split()).casefold()  # split() and re's \s agree on whitespace; split is 3x faster


def normalise_text(text: str) -> str:
    """Case-folded, whitespace collapsed, quoted lines dropped (new_text has none, but a client's
    mailer may still leave a stray "> ...")."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(">")]
    return " ".join(" ".join(lines).split()).casefold().replace("ё", "е")


def text_facts(text: str, attachment_hashes: tuple[str, ...] | list[str] = ()) -> frozenset[str]:
    """What makes a request about one specific thing: emails, links, numbers, attachments."""
    facts = {f"email:{m.casefold()}" for m in _EMAIL.findall(text)}
    facts |= {f"url:{m.rstrip('.,;)').casefold()}" for m in _URL.findall(text)}
    rest = _URL.sub(" ", _EMAIL.sub(" ", text))
    facts |= {f"num:{m}" for m in _NUMBER.findall(rest)}
    facts |= {f"file:{h}" for h in attachment_hashes}
    return frozenset(facts)


def near_print(text: str) -> str:
    """What the near check compares of a new text: its first NEAR_COMPARE_CHARS characters, normalised."""
    return normalise_text(text[:NEAR_COMPARE_CHARS])


def _lengths_allow(a: int, b: int, cutoff: float) -> bool:
    """Whether texts of lengths a and b can reach a ratio of `cutoff` at all (2*min/(a+b), the best case)."""
    return a + b == 0 or 200.0 * min(a, b) / (a + b) >= cutoff


def content_hash(message: InboundMessage) -> str:
    """sha256 of what makes a mail the same request; stored on Ticket.content_hash by the workflow."""
    parts = [
        message.from_address.casefold(),
        normalise_subject(message.subject),
        normalise_text(message.new_text),
        ",".join(sorted(a.sha256 for a in message.attachments)),
    ]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class TextPrint(NamedTuple):
    """What the duplicate checks compare of one mail (`DuplicateRule.analyse`)."""

    content_hash: str  # of the whole new text
    text: str  # near_print(new_text)


def request_content_hash(message: InboundMessage, analyses: Mapping[str, Any] | None) -> str:
    """The content hash of a request, as its duplicate analysis already computed it when there is one."""
    printed = (analyses or {}).get(DuplicateRule.__name__)
    return printed.content_hash if isinstance(printed, TextPrint) else content_hash(message)


def _original(t: PriorTicket) -> int:
    return t.duplicate_of or t.id  # link a re-re-send to the first request, not to another copy


class DuplicateRule(Rule):
    code = FindingCode.DUPLICATE
    clause = "2.6"
    title_ru = "Дублирование сообщения"
    title_en = "Duplicate message"
    bounded_text = False  # the content hash reads the whole text (linear); the near print is bounded below

    def analyse(self, message: InboundMessage, data: PolicyData) -> TextPrint:
        return TextPrint(content_hash=content_hash(message), text=near_print(message.new_text))

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        msg = req.message
        ids = {"Message-ID": msg.message_id, "Resent-Message-ID": msg.resent_message_id}
        printed: TextPrint = self.analysis(req, ctx)
        h = printed.content_hash
        since = req.arrived_at - timedelta(days=ctx.config.duplicate_window_days)
        # Checks (a) and (b) share one round trip; (c) queries only when neither matched.
        copies = await ctx.repository.earlier_copies([v for v in ids.values() if v], h, arrived_at=req.arrived_at,
                                                     ticket_id=req.ticket_id, since=since)
        evidence = self._by_message_id(req, ctx, ids, copies.seen)
        if evidence is None:
            evidence = self._exact(h, copies.same_hash)
        if evidence is None:
            evidence = await self._near(req, ctx, since, printed)
        if evidence is None:
            return []
        ctx.duplicate_of = evidence["original_ticket"]
        return [self.finding(evidence, "block")]

    @staticmethod
    def _by_message_id(req: PolicyRequest, ctx: PolicyContext, ids: dict[str, str | None],
                       seen: list[SeenMessage]) -> dict[str, Any] | None:
        if not seen:
            return None
        msg = req.message
        first = seen[0]
        header = next(h for h, v in ids.items() if v == first.message_id)
        ours = sorted({a for a in [*msg.to, *msg.cc] if a in ctx.config.company_addresses})
        return {"check": "message_id", "header": header, "message_id": first.message_id,
                "original_ticket": first.ticket_duplicate_of or first.ticket_id,
                "seen_on_ticket": first.ticket_id, "delivered_to": list(msg.delivered_to),
                "company_addresses": ours}

    @staticmethod
    def _exact(h: str, earlier: list[PriorTicket]) -> dict[str, Any] | None:
        if not earlier:
            return None
        t = earlier[0]
        return {"check": "exact", "content_hash": h, "original_ticket": _original(t), "matched_ticket": t.id,
                "original_status": t.status, "original_arrived_at": t.arrived_at.isoformat()}

    @staticmethod
    async def _near(req: PolicyRequest, ctx: PolicyContext, since: datetime,
                    printed: TextPrint) -> dict[str, Any] | None:
        msg = req.message
        if not printed.text:
            return None  # nothing to compare; an identical empty re-send is caught by the exact check
        candidates = await ctx.repository.recent_tickets(
            client_id=ctx.client.client_id if ctx.client else None,
            sender_address=None if ctx.client else msg.from_address,
            arrived_at=req.arrived_at, ticket_id=req.ticket_id, since=since)
        if not candidates:
            return None
        work = len(msg.new_text[:POLICY_TEXT_CHARS]) + sum(len(t.new_text[:POLICY_TEXT_CHARS]) for t in candidates)
        compare = (printed.text, msg, candidates, ctx.config.near_duplicate_ratio)
        best = _most_similar(*compare) if work <= NEAR_INLINE_CHARS else await asyncio.to_thread(_most_similar, *compare)
        if best is None:
            return None
        ratio, t, facts = best
        evidence = {"check": "near", "ratio": round(ratio, 1), "threshold": ctx.config.near_duplicate_ratio,
                    "original_ticket": _original(t), "matched_ticket": t.id, "original_status": t.status,
                    "original_arrived_at": t.arrived_at.isoformat(), "facts": sorted(facts)}
        if max(len(msg.new_text), len(t.new_text)) > NEAR_COMPARE_CHARS:
            evidence["compared_chars"] = NEAR_COMPARE_CHARS
        return evidence


def _most_similar(text: str, msg: InboundMessage, candidates: list[PriorTicket],
                  cutoff: float) -> tuple[float, PriorTicket, frozenset[str]] | None:
    """The most similar candidate with the same facts as `msg` (whose near print is `text`), if any.
    Pure CPU work on bounded texts: `_near` may run it in a thread."""
    best: tuple[float, PriorTicket] | None = None
    facts: frozenset[str] | None = None  # found only once a text is similar enough to compare them
    for t in candidates:
        other = near_print(t.new_text)
        if not other:
            continue
        if max(len(msg.new_text), len(t.new_text)) > NEAR_COMPARE_CHARS and not _lengths_allow(
                len(msg.new_text), len(t.new_text), cutoff):
            continue  # only the starts are compared: whole texts this unequal in length cannot be copies
        # score_cutoff lets rapidfuzz give up early on clearly different texts.
        ratio = fuzz.ratio(text, other, score_cutoff=cutoff)
        if not ratio:
            continue
        if facts is None:
            facts = text_facts(msg.new_text[:POLICY_TEXT_CHARS], tuple(a.sha256 for a in msg.attachments))
        if text_facts(t.new_text[:POLICY_TEXT_CHARS], t.attachment_hashes) == facts and (
                best is None or ratio > best[0]):
            best = (ratio, t)
    if best is None or facts is None:
        return None
    return best[0], best[1], facts
