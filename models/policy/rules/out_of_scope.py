"""2.4, 2.6: requests outside what support does under the contract.

Two categories, listed in `config/defaults/out_of_scope.toml` (Russian and English phrases, matched
on lemmas so any word form hits):
- "consulting" (2.4): programming, design, the client's own scripts and programs. Refusal reason
  "consulting": possible as a paid service by separate agreement.
- "not_in_contract" (2.6): services the contract does not cover. Refusal reason "out_of_scope".
Problems with our own services ("не работает личный кабинет") are in scope and are not listed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.policy.base import Finding, FindingCode, PolicyConfig, PolicyContext, PolicyRequest, Rule
from models.policy.lemmas import PhraseHit, PhraseMatcher

if TYPE_CHECKING:
    from models.inbound import InboundMessage
    from models.policy.base import PolicyData


@dataclass(frozen=True)
class ScopeCategory:
    name: str
    clause: str
    title_ru: str
    title_en: str
    refuse_reason: str


@dataclass(frozen=True)
class ScopeBook:
    categories: dict[str, ScopeCategory]
    matcher: PhraseMatcher


def load_scope_book(config: PolicyConfig) -> ScopeBook:
    with config.data_file("out_of_scope.toml").open("rb") as fh:
        data: dict[str, Any] = tomllib.load(fh)
    categories: dict[str, ScopeCategory] = {}
    phrases: list[tuple[str, str]] = []
    for item in data.get("category", []):
        cat = ScopeCategory(item["name"], item.get("clause", "2.6"), item["title_ru"], item["title_en"],
                            item.get("refuse_reason", "out_of_scope"))
        categories[cat.name] = cat
        phrases += [(cat.name, p) for p in item.get("phrases", [])]
    return ScopeBook(categories, PhraseMatcher(phrases, max_gap=int(data.get("max_gap", 2))))


def _hit(h: PhraseHit, where: str) -> dict[str, Any]:
    return {"phrase": h.phrase, "text": h.text, "where": where, "start": h.start, "end": h.end}


class OutOfScopeRule(Rule):
    code = FindingCode.OUT_OF_SCOPE
    clause = "2.4"
    title_ru = "Запрос вне рамок технической поддержки"
    title_en = "Request outside the scope of technical support"
    loaders = (load_scope_book,)

    def analyse(self, message: InboundMessage, data: PolicyData) -> dict[str, list[dict[str, Any]]]:
        book = data.get(load_scope_book)
        by_category: dict[str, list[dict[str, Any]]] = {}
        for where, text in (("subject", message.subject), ("body", message.new_text)):
            for h in book.matcher.find(text):
                by_category.setdefault(h.key, []).append(_hit(h, where))
        return by_category

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        book = ctx.data.get(load_scope_book)
        by_category: dict[str, list[dict[str, Any]]] = self.analysis(req, ctx)
        findings = []
        for name, hits in by_category.items():
            cat = book.categories[name]
            findings.append(self.finding(
                {"category": name, "refuse_reason": cat.refuse_reason, "matches": hits,
                 "offer": "paid, by separate agreement", "offer_ru": "платно, по дополнительной договорённости"},
                "block", clause=cat.clause, title_ru=cat.title_ru, title_en=cat.title_en))
        return findings
