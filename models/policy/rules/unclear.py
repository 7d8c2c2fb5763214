"""2.1-2.2: the request must state its task clearly. A mail with only a greeting, thanks or a
signature, or only attachments, states nothing: staff should ask what is needed.

"Meaningful" words are those left after removing greetings, politeness, function words and the
sender's own name (the signature), counted over the subject and the new text together.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from models.policy.base import Finding, FindingCode, PolicyContext, PolicyRequest, Rule
from models.policy.lemmas import lemmas_of

if TYPE_CHECKING:
    from models.inbound import InboundMessage
    from models.policy.base import PolicyData

MIN_MEANINGFUL_WORDS = 3

# Words that carry no task; their lemmas (models.policy.lemmas.lemma) are made on first use, not at import
# (lemmatising loads the morphology dictionaries, which only the parse workers may need).
FILLER_WORDS = (
    "здравствуйте здравствуй привет добрый день утро вечер доброго времени суток уважаемый уважаемые "
    "коллеги спасибо благодарю заранее пожалуйста с уважением всего доброго хорошего "
    "и в на по к о от для за у из а но или же ли это вот вопрос письмо тема сообщение файл "
    "вложение вложении прикреплено прикрепляю высылаю направляю см re fwd fw отв пересл "
    "hello hi dear good morning afternoon evening thanks thank you please regards best kind sincerely "
    "cheers the a an to of for in on and or is it this see attached attachment file message subject question"
)


@cache
def filler() -> frozenset[str]:
    return frozenset(lemmas_of(FILLER_WORDS))


class UnclearRule(Rule):
    code = FindingCode.UNCLEAR
    clause = "2.1-2.2"
    title_ru = "Задача не сформулирована"
    title_en = "Task not stated"

    def analyse(self, message: InboundMessage, data: PolicyData) -> list[str]:
        """The meaningful words of the subject and the new text."""
        msg = message
        fill = filler()
        own_name = set(lemmas_of(msg.from_name)) | set(lemmas_of(msg.from_address.split("@", 1)[0]))
        # Two calls, not one on the joined text: a word never spans the line break, and the tokens of
        # the subject and of the text are already cached by the rules that ran before.
        words = [lem for lem in lemmas_of(msg.subject) + lemmas_of(msg.new_text)
                 if lem not in fill and lem not in own_name and len(lem) > 1]
        return words

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        msg = req.message
        words: list[str] = self.analysis(req, ctx)
        if len(words) >= MIN_MEANINGFUL_WORDS:
            return []
        return [self.finding({"meaningful_words": words, "min": MIN_MEANINGFUL_WORDS,
                              "attachments": len(msg.attachments)}, "warn")]
