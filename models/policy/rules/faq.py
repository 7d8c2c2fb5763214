"""2.5: standard questions are answered with links to the instructions.

Entries live in `config/defaults/faq.toml`; each has patterns matched on lemmas of the subject and
the new text, an answer in Russian and English, and links to https://storeolis.ru/help/...
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.policy.base import Finding, FindingCode, PolicyConfig, PolicyContext, PolicyRequest, Rule
from models.policy.lemmas import PhraseMatcher

if TYPE_CHECKING:
    from models.inbound import InboundMessage
    from models.policy.base import PolicyData


@dataclass(frozen=True)
class FaqBook:
    entries: dict[str, dict[str, Any]]  # id -> entry as in the file, without patterns
    matcher: PhraseMatcher


def load_faq(config: PolicyConfig) -> FaqBook:
    with config.data_file("faq.toml").open("rb") as fh:
        data = tomllib.load(fh)
    entries: dict[str, dict[str, Any]] = {}
    phrases: list[tuple[str, str]] = []
    for item in data.get("entry", []):
        entries[item["id"]] = {
            "id": item["id"], "title_ru": item.get("title_ru", ""), "title_en": item.get("title_en", ""),
            "answer_ru": item.get("answer_ru", ""), "answer_en": item.get("answer_en", ""),
            "links": [{"title": link["title"], "url": link["url"]} for link in item.get("links", [])],
        }
        phrases += [(item["id"], p) for p in item.get("patterns", [])]
    return FaqBook(entries, PhraseMatcher(phrases, max_gap=int(data.get("max_gap", 2))))


class FaqRule(Rule):
    code = FindingCode.FAQ
    clause = "2.5"
    title_ru = "Типовой вопрос: есть ответ в инструкциях"
    title_en = "Standard question: answered in the instructions"
    loaders = (load_faq,)

    def analyse(self, message: InboundMessage, data: PolicyData) -> dict[str, list[dict[str, Any]]]:
        book = data.get(load_faq)
        matched: dict[str, list[dict[str, Any]]] = {}
        for where, text in (("subject", message.subject), ("body", message.new_text)):
            for h in book.matcher.find(text):
                matched.setdefault(h.key, []).append(
                    {"pattern": h.phrase, "text": h.text, "where": where, "start": h.start, "end": h.end})
        return matched

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        book = ctx.data.get(load_faq)
        matched: dict[str, list[dict[str, Any]]] = self.analysis(req, ctx)
        if not matched:
            return []
        ctx.faq_entries = [{**book.entries[i], "matches": m} for i, m in matched.items()]
        return [self.finding(
            {"entries": list(matched), "links": [link for i in matched for link in book.entries[i]["links"]],
             "matches": matched}, "info")]
