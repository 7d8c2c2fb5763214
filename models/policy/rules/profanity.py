"""2.6: obscene language and insults.

Only what the client wrote now is checked (subject and new text): quoted history may contain other
people's words. Obscene words, insults and English swearing block (refusal reason "profanity");
accusations alone ("вы мошенники") are shown for human judgement (info) and do not suggest a refusal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.policy.base import Finding, FindingCode, PolicyConfig, PolicyContext, PolicyRequest, Rule

if TYPE_CHECKING:
    from models.inbound import InboundMessage
    from models.policy.base import PolicyData
    from models.policy.profanity import ProfanityDetector

BLOCKING = frozenset({"obscene", "insult", "english"})


def load_detector(config: PolicyConfig) -> ProfanityDetector:
    # Imported here so the rest of the chain stays importable while the detector is being written.
    from models.policy.profanity import ProfanityDetector

    path = config.config_dir / "profanity.toml" if config.config_dir is not None else None
    return ProfanityDetector(path if path is not None and path.is_file() else None)


class ProfanityRule(Rule):
    code = FindingCode.PROFANITY
    clause = "2.6"
    title_ru = "Нецензурная лексика или оскорбления"
    title_en = "Obscene language or insults"
    loaders = (load_detector,)

    def analyse(self, message: InboundMessage, data: PolicyData) -> list[dict[str, Any]]:
        detector = data.get(load_detector)
        hits: list[dict[str, Any]] = []
        for where, text in (("subject", message.subject), ("body", message.new_text)):
            hits += [{"word": h.word, "where": where, "start": h.start, "end": h.end, "category": h.category,
                      "root": h.root} for h in detector.find(text)]
        return hits

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        hits: list[dict[str, Any]] = self.analysis(req, ctx)
        if not hits:
            return []
        if any(h["category"] in BLOCKING for h in hits):
            return [self.finding({"kind": "profanity", "hits": hits}, "block")]
        return [self.finding({"kind": "accusation", "hits": hits}, "info",
                             title_ru="Обвинения в адрес компании: оцените вручную",
                             title_en="Accusations against the company: judge manually")]
