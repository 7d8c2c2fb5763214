"""2.1-2.2: the request must state its task clearly. A mail with only a greeting, thanks or a
signature, only attachments, or only a nudge ("ну что, есть новости?", "напоминаю о своём письме",
"any update?") states nothing: staff should ask what is needed, or find the earlier request.

"Meaningful" words are those left after removing greetings, politeness, function words, the words of a
nudge, the sender's own name, people's names and the signature block (from a line such as "С уважением",
"--", "Best regards", "Отправлено с iPhone" on), counted over the subject and the new text together. A
number of three digits or more (an order, an error code) counts as a word: "API отдаёт 401" is a task.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from models.policy.base import Finding, FindingCode, PolicyContext, PolicyRequest, Rule
from models.policy.lemmas import analyzer, lemma, lemmas_of

if TYPE_CHECKING:
    from models.inbound import InboundMessage
    from models.policy.base import PolicyData

MIN_MEANINGFUL_WORDS = 2

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
# The words of a nudge: asking after an earlier request without saying anything new.
NUDGE_WORDS = (
    "ну что там так как есть какой какие-то какие-нибудь что-нибудь что-то новость новости слышно движение "
    "продвигаться ждать жду ожидать ответ ответить отвечать получить получили напоминать напоминаю напоминание "
    "повторно ещё еще раз снова мой моё свой наш ваш вы я мы обращение запрос заявка предыдущий прошлый неделя "
    "понедельник вторник среда четверг пятница когда уже всё всё-таки подсказать прошу просьба хотеться бы "
    "информация ау алло alo алё кто живой поддержка "
    "any update updates news follow following up followup checking check in just still waiting wait reply "
    "response reminder remind request progress ping bump bumping did you get my your email previous team "
    "there status yet"
)
# A line starting so begins the signature block: it and the lines after it are not the request.
_SIGNATURE_START = re.compile(
    r"^[ \t]*(?:--|—|с уважением|с наилучшими|всего доброго|best regards|kind regards|regards|cheers|"
    r"отправлено (?:с|из)|sent from|get outlook)", re.IGNORECASE | re.MULTILINE)
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_NUMBER = re.compile(r"\d{3,}")


@cache
def filler() -> frozenset[str]:
    return frozenset(lemmas_of(FILLER_WORDS)) | frozenset(lemmas_of(NUDGE_WORDS))


@lru_cache(maxsize=50_000)
def _is_name(word: str) -> bool:
    """A capitalised first name, surname or patronymic ("Елена", "Соколова"): a signature, not a task."""
    if not word[:1].isupper() or not re.search("[а-яё]", word[1:]):
        return False
    tag = analyzer().parse(word)[0].tag
    return "Name" in tag or "Surn" in tag or "Patr" in tag


def _without_signature(text: str) -> str:
    m = _SIGNATURE_START.search(text)
    return text if m is None else text[: m.start()]


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
        words: list[str] = []
        for text in (msg.subject, _without_signature(msg.new_text)):
            # A request that says something is long: stop counting once it has enough words.
            for m in _WORD.finditer(text):
                lem = lemma(m.group())
                if lem not in fill and lem not in own_name and len(lem) > 1 and not _is_name(m.group()):
                    words.append(lem)
                    if len(words) >= MIN_MEANINGFUL_WORDS:
                        return words
            words += _NUMBER.findall(text)[: MIN_MEANINGFUL_WORDS]
        return words

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        msg = req.message
        words: list[str] = self.analysis(req, ctx)
        if len(words) >= MIN_MEANINGFUL_WORDS:
            return []
        return [self.finding({"meaningful_words": words, "min": MIN_MEANINGFUL_WORDS,
                              "attachments": len(msg.attachments)}, "warn")]
