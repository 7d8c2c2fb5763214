"""The profanity rule. Most tests use a stand-in detector so they prove the rule's own logic (which
text is checked, which categories block); the last ones run the real ProfanityDetector."""

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

import models.policy.profanity as profanity_module
from models.policy import PolicyConfig, PolicyData
from models.policy.rules.profanity import ProfanityRule, load_detector

from .factories import codes, finding, make_client, make_message, verdict_of


@dataclass(frozen=True)
class Hit:
    word: str
    start: int
    end: int
    category: str
    root: str


class WordListDetector:
    """Finds listed words verbatim; enough to exercise the rule."""

    def __init__(self, words: dict[str, str]) -> None:
        self.words = words

    def find(self, text: str) -> list[Hit]:
        hits = []
        for word, category in self.words.items():
            start = text.casefold().find(word)
            if start >= 0:
                hits.append(Hit(text[start:start + len(word)], start, start + len(word), category, word))
        return hits


def _data(words: dict[str, str]) -> PolicyData:
    data = PolicyData(PolicyConfig())
    data.preset(load_detector, WordListDetector(words))
    return data


WORDS = {"идиоты": "insult", "мошенники": "accusation", "damn": "english", "хрен": "obscene"}


async def test_insult_in_body_blocks_with_word_and_position(db):
    await make_client()
    text = "Вы там идиоты? Третий день не работает оплата!"
    v = await verdict_of(make_message(new_text=text), ProfanityRule, data=_data(WORDS))
    f = finding(v, "profanity")
    assert f.severity == "block" and f.clause == "2.6"
    hit = f.evidence["hits"][0]
    assert hit["word"] == "идиоты" and hit["where"] == "body" and text[hit["start"]:hit["end"]] == "идиоты"
    assert v.suggestion == "refuse" and v.refuse_reason == "profanity"


async def test_english_swearing_in_subject_blocks(db):
    await make_client()
    v = await verdict_of(make_message(subject="Fix this damn checkout"), ProfanityRule, data=_data(WORDS))
    assert finding(v, "profanity").evidence["hits"][0]["where"] == "subject"


async def test_accusation_alone_is_info_for_human_judgement_and_not_a_refusal(db):
    await make_client()
    v = await verdict_of(make_message(new_text="Вы мошенники, списали деньги дважды за тариф!"), ProfanityRule,
                         data=_data(WORDS))
    f = finding(v, "profanity")
    assert f.severity == "info" and f.evidence["kind"] == "accusation"
    assert v.suggestion == "accept"


async def test_quoted_history_is_not_checked(db):
    await make_client()
    msg = make_message(new_text="Спасибо, всё заработало.", quoted_text="> вы идиоты\n> хрен вам",
                       text="Спасибо, всё заработало.\n> вы идиоты\n> хрен вам")
    v = await verdict_of(msg, ProfanityRule, data=_data(WORDS))
    assert "profanity" not in codes(v)


async def test_real_detector_blocks_obscene_word(db):
    await make_client()
    v = await verdict_of(make_message(new_text="Да вы охренели, блядь, сколько можно ждать ответа?"), ProfanityRule)
    f = finding(v, "profanity")
    assert f.severity == "block" and any(h["category"] == "obscene" for h in f.evidence["hits"])


async def test_real_detector_passes_a_polite_request(db):
    await make_client()
    v = await verdict_of(make_message(), ProfanityRule)
    assert "profanity" not in codes(v)


_SPREAD_ALPHABET = "ая bх у й._-*#@_\n\u00ad\u200b\u03011Z!"


@given(st.text(alphabet=_SPREAD_ALPHABET, max_size=30))
@settings(max_examples=3000, deadline=None)
def test_the_spread_prefilter_never_hides_a_spread_out_word(text: str) -> None:
    """`_SPREAD_NEED_RE` only decides whether `_SPREAD_HINT_RE` is searched at all: it must find
    something wherever the hint would."""
    if profanity_module._SPREAD_HINT_RE.search(text) is not None:
        assert profanity_module._SPREAD_NEED_RE.search(text) is not None
