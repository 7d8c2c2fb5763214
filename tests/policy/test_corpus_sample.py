"""Every text rule's hits and misses on a fixed sample of the corpus's tune part (issue 17).

No score threshold: the test pins, record by record, which of the three findings (out of scope,
profanity, unclear) the rules raise on about 80 records chosen by hash. A change that makes a rule
miss a record it caught, or catch one it should not, fails here with the record; a change that fixes a
known miss fails too, until the miss is struck from KNOWN_MISSES. The test part is never sampled.
"""

from __future__ import annotations

import hashlib

import pytest

from scripts.bench.policy_quality import Judge, load_corpus

# Sampled records the rules still get wrong: (start of the text, what is missed).
KNOWN_MISSES = {
    "Здравствуйте! У нас в офисе не работает интернет на двух компьютерах": "out_of_scope",
    "Сделайте нам систему онлайн-записи на услуги для салона": "out_of_scope",
    "Привет. На нашем старом магазине на OpenCart 3 модуль SEO URL": "out_of_scope",  # "Как лечится?" asks
    "Здравствуйте!\nСоседка моя, Валентина, говорит": "out_of_scope",  # legal advice in a neighbour's story
}


def _sampled(row: dict[str, str]) -> bool:
    digest = hashlib.sha256((row["subject"] + "\n" + row["text"]).encode("utf-8")).hexdigest()
    return row["split"] == "tune" and int(digest[8:16], 16) % 8 == 0


SAMPLE = [r for r in load_corpus() if _sampled(r)]


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge()


def test_the_sample_covers_every_label() -> None:
    assert len(SAMPLE) >= 60
    assert {r["label"] for r in SAMPLE} == {"out_of_scope", "in_scope", "profanity", "unclear"}


@pytest.mark.parametrize("row", SAMPLE, ids=lambda r: r["text"][:40])
def test_each_rule_hits_or_misses_the_sampled_record_as_pinned(judge: Judge, row: dict[str, str]) -> None:
    raised = set(judge.codes(row["subject"], row["text"]))
    if row["label"] == "profanity":
        raised.discard("unclear")  # abuse without a task may be both (see the corpus README)
    expected = {row["label"]} - {"in_scope"}
    missed = next((code for start, code in KNOWN_MISSES.items() if row["text"].startswith(start)), None)
    if missed is not None:
        expected.discard(missed)
    assert raised == expected, row["text"]
