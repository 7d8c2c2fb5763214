"""A second opinion for the unclear rule: a logistic regression over the lemmas and lemma pairs of a request
(models/policy/text_model.py), trained on the tuning part of the labelled corpus by
`python -m scripts.train_text_models`, its weights in `config/defaults/unclear_model.json`.

Why: the rule counts the words that carry a task and stops at two, so a long polite nudge ("Позвольте
деликатно напомнить о моём письме от 12-го числа, оставшемся, по всей видимости, без ответа …", "I hope
this message finds you well. I just wanted to gently follow up …") has words enough and passes for a task.
The model has read such nudges and finds them; it never takes a finding away.

It reads, and was trained on, the subject and the client's own words: the new text with a reply's quote cut
off (`own_part`). Ten-batch cross-validation on the tune part: 263/1/7 (tp/fp/fn) this way, 263/3/7 when
it read the quote too.
It may find a request unclear only when, in the new text (a reply's quote cut off):
- it gives more than `rescue_above`;
- there are at least `min_words` words: a short request the rule let through states its task in few words
  ("Dashboard is down.", "Остатки обнулились!!!"), which the model, having seen short nudges, would doubt;
- no verb asks for an action: a Russian imperative, 2nd person or infinitive other than the verbs of
  talking to us (`talk_verbs`: ответить, сообщить, напомнить …), or an English verb of `task_verbs_en`
  ("Ну что, когда включите обратно выгрузку?" and "Please restart the export" are tasks, however much
  they read like a nudge).
Thresholds and lists are in unclear.toml, `[model]`; batch cross-validation on the tune part chose them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from models.policy.lemmas import analyzer, lemma
from models.policy.text_model import Feature, LinearModel, lemmatise, linear_from_json, weightiest

MODEL_FILE = "unclear_model.json"
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_CYRILLIC = re.compile("[а-яё]")
_EVIDENCE_WORDS = 3


@lru_cache(maxsize=50_000)
def _asking_verb(word: str) -> bool:
    """A Russian verb in a form that asks for an action: imperative, 2nd person, infinitive."""
    tag = analyzer().parse(word)[0].tag
    return "INFN" in tag or ("VERB" in tag and ("impr" in tag or "2per" in tag))


def _english_bases(word: str) -> frozenset[str]:
    """The bases an English verb form may have: "deleted" -> delete, "fixing" -> fix, "stopped" -> stop,
    "resets" -> reset. Candidates, not a lemmatiser: they are only looked up in `task_verbs_en`, so "I still
    need the test orders deleted" asks for an action as "please delete" does. Not cached: four suffix tests
    cost less than a cache of every Latin word a client may write."""
    found: set[str] = set()
    for suffix in ("ed", "ing", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            found.update((stem, stem + "e"))
            if len(stem) > 2 and stem[-1] == stem[-2]:
                found.add(stem[:-1])  # a doubled consonant: "stopped", "setting"
    return frozenset(found)


@dataclass(frozen=True)
class NudgeModel:
    model: LinearModel
    rescue_above: float
    min_words: int
    talk_verbs: frozenset[str]  # lemmas
    task_verbs_en: frozenset[str]

    def task_verb(self, subject: str, new_text: str) -> str | None:
        """The first word that asks for an action, as written, or None."""
        for text in (subject, new_text):
            for word in _WORD.findall(text):
                folded = word.casefold()
                if _CYRILLIC.search(folded):
                    if _asking_verb(folded) and lemma(word) not in self.talk_verbs:
                        return word
                elif lemma(word) in self.task_verbs_en or not _english_bases(folded).isdisjoint(self.task_verbs_en):
                    return word
        return None

    def judge(self, subject: str, own: str,
              unsigned: Callable[[], str] | None = None) -> tuple[float, list[Feature]] | None:
        """(probability, the words that weighed most) when the request is a nudge by the model, else None.
        `own` is the new text without a reply's quote: the model and its guards read only the client's own
        words (a new task above a quoted nudge is a task, and a quoted "перезапустите" is not this mail's
        ask), the verbs only in `unsigned()`, `own` without its signature block (a disclaimer's "просим
        уведомить отправителя" asks nothing of us). A callable, because cutting the signature costs about
        40 us and is needed only for the few requests the model takes for nudges. The evidence's spans are
        offsets into `subject` and `own`."""
        if len(_WORD.findall(own)) < self.min_words:
            return None
        p = self.model.score(lemmatise(subject, own))
        if p <= self.rescue_above or self.task_verb(subject, own if unsigned is None else unsigned()) is not None:
            return None
        return p, weightiest(self.model, subject, own, _EVIDENCE_WORDS)


def load_nudge_file(path: Path) -> LinearModel:
    return linear_from_json(json.loads(path.read_text(encoding="utf-8"))["unclear"])
