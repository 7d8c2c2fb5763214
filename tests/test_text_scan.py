"""Issue 16, linear text work: every pattern and text loop run on client text is linear in its input.

Two kinds of test. Equivalence: the linear scans (models/text_scan.py) give exactly the matches of the
stdlib's on random texts made of the characters that matter. Adversarial: each fixed pattern gets a
single-line input on which the old, quadratic code would run for hours (a 40 KB word took 7.7 s, and the
cost grows with the square), run in a child process that must finish within a generous deadline: no
timing assertion, the linear code needs about a second.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mail.parse import _ADDRESS_SEARCH
from models.policy import PolicyConfig, PolicyEngine
from models.policy.analyser import _NoLookups
from models.policy.authresults import _EQUALS
from models.policy.base import POLICY_TEXT_CHARS
from models.policy.profanity import _URL_OR_EMAIL_RE
from models.policy.rules.duplicates import _EMAIL
from models.text_scan import RunScan, Spans, tags_removed
from tests.policy.factories import make_message

# Long enough that the quadratic versions would take hours; the linear ones take about a second.
REPO = Path(__file__).resolve().parents[1]

SCANS = {"duplicates._EMAIL": _EMAIL, "profanity._URL_OR_EMAIL_RE": _URL_OR_EMAIL_RE,
         "authresults._EQUALS": _EQUALS, "parse._ADDRESS_SEARCH": _ADDRESS_SEARCH}
ALPHABET = list("ab1.@-_+ \t=:/w'xé") + ["www.", "http://", "HTTP://", "a@b.c", "@b.c", "\n"]


def random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 40))) for _ in range(count)]


@pytest.mark.parametrize("name", sorted(SCANS))
def test_run_scans_find_exactly_what_the_stdlib_finds(name: str) -> None:
    scan: RunScan = SCANS[name]
    for text in random_texts(4000, seed=hash(name) % 1000):
        expected = [m.span() for m in scan.anywhere.finditer(text)]
        assert [m.span() for m in scan.finditer(text)] == expected, (name, text)
        assert scan.findall(text) == scan.anywhere.findall(text)
        assert scan.sub(" ", text) == scan.anywhere.sub(" ", text)


def test_tags_removed_is_the_stdlib_substitution() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        text = "".join(rng.choice("<>a b/") for _ in range(rng.randrange(0, 30)))
        assert tags_removed(text) == re.sub(r"<[^>]*>", " ", text), text


def test_spans_answer_as_a_scan_over_every_span() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        spans = [(s, s + rng.randrange(1, 6)) for s in rng.sample(range(30), rng.randrange(0, 8))]
        index = Spans(spans)
        for pos in range(-1, 40):
            assert index.covers(pos) == any(s <= pos < e for s, e in spans)
            end = pos + rng.randrange(1, 5)
            assert index.overlaps(pos, end) == any(s < end and pos < e for s, e in spans)


def finishes(code: str, deadline: float = 120) -> None:
    """Run `code` in a fresh interpreter and require it to finish (and its asserts to hold) within
    `deadline` seconds. A child process, not pytest-timeout: a regex running in C holds the GIL, so no
    timer thread in the test's own process could stop it."""
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                              text=True, timeout=deadline, env={**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {deadline} s: the work is not linear in its input")
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("unit", ["1", "a.", "-", "_"])
def test_duplicate_facts_are_linear_on_a_long_word(unit: str) -> None:
    finishes(f"""
        from models.policy.rules.duplicates import text_facts
        facts = text_facts({unit!r} * (1_000_000 // {len(unit)}) + " buh@romashka.ru")
        assert "email:buh@romashka.ru" in facts
    """)


def test_profanity_detector_is_linear_on_addresses_and_their_overlap_checks() -> None:
    finishes("""
        from models.policy.base import PolicyConfig
        from models.policy.rules.profanity import load_detector
        hits = load_detector(PolicyConfig()).find("x@x." * 100_000 + " хуйня")
        assert [h.word for h in hits] == ["хуйня"], hits[:3]
    """)


def test_authentication_results_are_linear_on_a_long_blank_run() -> None:
    finishes("""
        from models.policy.authresults import parse_authentication_results
        parsed = parse_authentication_results("mx.storeolis.ru; spf = pass" + " " * 1_000_000 + "x")
        assert parsed is not None and parsed.results[0].result == "pass"
    """)


def test_a_long_sender_without_an_address_is_rejected_in_linear_time() -> None:
    finishes("""
        from mail.parse import parse_message
        from models.inbound import MalformedMessage
        raw = ("From: " + "a" * 400_000 + "\\r\\nTo: support@storeolis.ru\\r\\nSubject: x\\r\\n\\r\\nhi").encode()
        try:
            parse_message(raw)
        except MalformedMessage:
            pass
        else:
            raise AssertionError("a From without an address was accepted")
    """)


def test_tag_stripping_is_linear_on_unclosed_tags() -> None:
    finishes("""
        from models.text_scan import tags_removed
        assert tags_removed("<" * 1_000_000 + "a>b") == " b"
    """)


def test_quote_splitting_is_linear_in_lines_of_valedictions() -> None:
    finishes("""
        from mail.quotes import split_quoted
        split = split_quoted("Regards\\n" * 20_000)
        # Only the last valediction with at most ten lines after it starts the signature.
        assert split.new_text.count("Regards") == 20_000 - 11 and split.quoted_text.count("Regards") == 11
    """)


def test_reply_separators_are_linear_on_a_long_line_of_dashes() -> None:
    # Before the dashes were possessive, 16,000 of them followed by other words took 13 s (quadratic).
    finishes("""
        from models.policy.rules.unclear import _REPLY_SEPARATOR, _SEPARATOR
        line = "-" * 1_000_000 + " original messagX wrote"
        assert _SEPARATOR.match(line) is None and _REPLY_SEPARATOR.search(line + "\\nok") is None
        assert _REPLY_SEPARATOR.search("hi\\n" + "-" * 1_000_000 + "Original Message-----\\nx") is not None
    """)


def test_literal_blanking_is_linear_on_a_long_hyphenated_run() -> None:
    # With "\\b" a dotted name was tried from every hyphen: 32,000 characters took 15 s (quadratic).
    finishes("""
        from models.policy.rules.out_of_scope import _without_literals
        text = "a-" * 500_000 + " offers.xml"
        assert _without_literals(text, {}) == "a-" * 500_000 + " " * len(" offers.xml")
    """)


def test_the_rules_read_only_the_first_policy_text_chars_of_a_body() -> None:
    """A word past the limit is not analysed (it would cost the workers' time, and the card never shows
    it); the same word before the limit is found."""
    engine = PolicyEngine(PolicyConfig(), _NoLookups())  # type: ignore[arg-type]
    filler = "Обычный текст письма о выгрузке. " * (POLICY_TEXT_CHARS // 33 + 10)
    late = engine.analyse(make_message(new_text=filler + "вы мудак"))
    early = engine.analyse(make_message(new_text="вы мудак. " + filler))
    assert late["ProfanityRule"] == []
    assert [h["word"] for h in early["ProfanityRule"]] == ["мудак"]
    # The content hash still reads the whole text: mails that differ only past the limit are not copies.
    other = engine.analyse(make_message(new_text=filler + "вы молодец"))
    assert other["DuplicateRule"].content_hash != late["DuplicateRule"].content_hash


def test_the_trained_models_read_hostile_text_through_the_bounded_view() -> None:
    """The text models lemmatise every word they read: a run of hyphen-joined letters, bidi controls and one
    endless word go through the whole analysis (the suite's deadline is the limit, no timing assertion), and a
    repeated nudge is still found by the nudge model."""
    engine = PolicyEngine(PolicyConfig(), _NoLookups())  # type: ignore[arg-type]
    for text in ("а-" * 200_000, "\u202eнапомните о письме\u202c " * 20_000, "ы" * 1_000_000):
        analyses = engine.analyse(make_message(new_text=text, subject="Re: " + text[:300]))
        assert analyses["OutOfScopeRule"] == {}
    text = "Позвольте деликатно напомнить о моём письме, оставшемся без ответа. " * 20_000
    nudge = engine.analyse(make_message(new_text=text, subject="Напоминание"))
    assert nudge["UnclearRule"]["enough"] is False and nudge["UnclearRule"]["model"] > 0.8


@pytest.mark.parametrize("line", [
    "Чт, 6 февр. <a@b.ru>:",  # the Gmail attribution, over and over on one line
    "<",  # an attribution's opening bracket with no address
    "x@y>:",  # the trigger ">:" without a start
])
def test_the_reply_separator_and_the_signature_are_linear_on_a_megabyte_line(line: str) -> None:
    finishes(f"""
        from models.policy.base import PolicyConfig
        from models.policy.rules.unclear import load_unclear_lexicon, own_part, without_signature
        text = "Выгрузка на Ozon падает. " + {line!r} * (1_000_000 // {len(line)}) + "\\n> старое письмо"
        assert own_part(text).startswith("Выгрузка на Ozon падает.")
        assert without_signature(text, load_unclear_lexicon(PolicyConfig())).startswith("Выгрузка")
        # mail.parse turns CR LF and a lone CR into LF before any rule reads the text; CRs here only cost time.
        many = ("Чт, 6 февр. 2025 г. в 16:40, Инна <inna@shop.ru>:\\n" * 20_000) + "> q"
        assert own_part(many) == many[: many.rindex("Чт")]  # only the line above the quote is its attribution
        own_part(("Чт, 6 февр. <a@b.ru>:\\r" * 50_000) + "\\n> q")
        emoji = "🌱" * 300_000 + "\\n«" + "Чайный путь" * 50_000 + "»"
        without_signature(emoji, load_unclear_lexicon(PolicyConfig()))
    """)


def test_the_signature_lines_are_linear_on_hostile_runs() -> None:
    """Inline-image placeholders, quoted names, titles after names and address lines, each as a megabyte
    line and as a hundred thousand short lines under a request; the request above them stays."""
    finishes("""
        from models.policy.base import PolicyConfig
        from models.policy.nudge_model import _english_bases
        from models.policy.rules.unclear import load_unclear_lexicon, without_signature
        lex = load_unclear_lexicon(PolicyConfig())
        task = "Выгрузка на Ozon падает."
        for unit in ("[cid:", "[image: a.png]", "агентство «", "Вера Лукина, аккаунт-менеджер ", "ул. 9, "):
            line = unit * (1_000_000 // len(unit))
            assert without_signature(task + "\\n" + line, lex).startswith(task)
            lines = "\\n".join([unit + "»"] * 100_000)
            assert without_signature(task + "\\n" + lines, lex).startswith(task)
        assert _english_bases("s" * 1_000_000 + "ed") >= {"s" * 1_000_000}
    """)


def test_a_ping_and_an_english_question_are_linear_on_hostile_runs() -> None:
    """A reply's body of a megabyte of "?" (ending in a digit, which is no word), and a megabyte of English
    modal words without a question mark, go through the unclear and out-of-scope rules."""
    finishes("""
        from models.policy.rules.unclear import _is_ping
        assert _is_ping("?" * 1_000_000) and not _is_ping("?" * 1_000_000 + "1")
        assert _is_ping(" ?!\\n") and not _is_ping("") and not _is_ping("...")
        from scripts.bench.policy_quality import Judge
        judge = Judge()
        assert "unclear" in judge.codes("Re: заказ 10452", "?" * 100_000)
        judge.codes("Re: заказ 10452", "?" * 100_000 + "1")
        judge.codes("", "could which can " * 60_000 + "fix my script")
    """)


def test_the_gmail_attribution_with_bidi_marks_still_ends_the_new_text() -> None:
    from models.policy.rules.unclear import own_part

    text = ("Прошу выставить счёт за март.\n\nЧт, 6 февр. 2025 г. в 16:40, \u202eанни\u202c "
            "<inna@shop.ru>:\n> Подскажите по нашему вопросу")
    assert own_part(text) == "Прошу выставить счёт за март.\n\n"
    # Without the ">" lines below it, a line ending in an address and a colon is the client's own text.
    assert own_part("Напишите на адрес <inna@shop.ru>:\nзавтра перезвоним") == (
        "Напишите на адрес <inna@shop.ru>:\nзавтра перезвоним")
