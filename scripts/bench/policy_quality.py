"""policy-quality: how well the text rules judge requests nobody tuned them on (issue 17). Not run by CI.

Runs the out-of-scope, profanity and unclear rules on the labelled corpus (tests/data/policy_corpus.jsonl, see
its README) and prints precision and recall per rule on the `tune` part (the rules alone: the trained models
of the out-of-scope and unclear rules learnt it) and the `test` part (with the models, and the rules alone),
with the number of the test part's misses (the misses themselves only with `--show-test-misses`: the rules are
tuned on the tune part alone, and a list printed on every run invites tuning to the test part). Then downloads the MIT-licensed `slaviclean` package with `pip download` (only here, never at run
time of the product) and reports the share of its Russian profanity lemmas (resources/profanity/ru.csv) the
profanity rule flags, one sentence per lemma, split into мат and person-naming insults.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.inbound import InboundMessage, MessageKind
from models.policy.base import PolicyConfig, PolicyContext, PolicyData, PolicyRequest
from models.policy.rules.out_of_scope import OutOfScopeRule, load_scope_model
from models.policy.rules.profanity import ProfanityRule
from models.policy.rules.unclear import UnclearRule, load_nudge_model

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "policy_corpus.jsonl"
RULES = {"out_of_scope": OutOfScopeRule, "profanity": ProfanityRule, "unclear": UnclearRule}
SLAVICLEAN = "slaviclean"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def load_corpus(path: Path = CORPUS) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def message(subject: str, text: str) -> InboundMessage:
    return InboundMessage(
        raw_size=len(text.encode()), message_id="corpus@romashka.ru", in_reply_to=None, references=[],
        resent_message_id=None, from_name="", from_address="client@romashka.ru", reply_to=None,
        to=["support@storeolis.ru"], cc=[], delivered_to=["support@storeolis.ru"], subject=subject,
        date_header=None, text=text, new_text=text, quoted_text="", has_html=False, attachments=[],
        kind=MessageKind.REQUEST, kind_reason="", authentication_results=[])


class Judge:
    """The three text rules without a database: their `check` reads only their own analysis."""

    def __init__(self, model: bool = True) -> None:
        self.data = PolicyData(PolicyConfig())
        if not model:  # the rules alone, without their trained second opinions
            self.data.put(load_scope_model, None)
            self.data.put(load_nudge_model, None)
        self.rules = {code: rule() for code, rule in RULES.items()}
        self.ctx = PolicyContext(config=self.data.config, repository=None, data=self.data)  # type: ignore[arg-type]

    def codes(self, subject: str, text: str) -> dict[str, dict[str, Any]]:
        """The codes raised by the three rules (a profanity finding counts only when it blocks)."""
        req = PolicyRequest(None, NOW, message(subject, text))
        raised: dict[str, dict[str, Any]] = {}
        for code, rule in self.rules.items():
            for f in _run(rule.check(req, self.ctx)):
                if code == "profanity" and f.severity != "block":
                    continue
                raised[code] = f.evidence
        return raised


def _run(coro: Any) -> Any:
    # check() never awaits anything for these rules: drive the coroutine by hand, no event loop needed.
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a text rule awaited something")


def scores(judge: Judge, rows: Iterable[dict[str, str]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    counts = {code: {"tp": 0, "fp": 0, "fn": 0} for code in RULES}
    misses: list[str] = []
    for row in rows:
        raised = judge.codes(row["subject"], row["text"])
        for code in RULES:
            if code == "unclear" and row["label"] == "profanity":
                continue  # abuse with no task may be unclear too: not judged (see the corpus README)
            want, got = row["label"] == code, code in raised
            if want and got:
                counts[code]["tp"] += 1
            elif got:
                counts[code]["fp"] += 1
                misses.append(f"FP {code} [{row['label']}/{row['category']}] {row['text'][:90]!r} "
                              f"{json.dumps(raised[code], ensure_ascii=False)[:160]}")
            elif want:
                counts[code]["fn"] += 1
                misses.append(f"FN {code} [{row['category']}] {row['text'][:110]!r}")
    result = {}
    for code, c in counts.items():
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
        result[code] = {**c, "precision": round(p, 3), "recall": round(r, 3)}
    return result, misses


# ----------------------------------------------------------------------------- slaviclean


def slaviclean_rows(workdir: Path) -> list[dict[str, str]]:
    """The rows of slaviclean's resources/profanity/ru.csv, from the wheel `pip download` fetches."""
    subprocess.run([sys.executable, "-m", "pip", "download", SLAVICLEAN, "--no-deps", "-q", "-d", str(workdir)],
                   check=True)
    wheel = next(workdir.glob("slaviclean-*"))
    if wheel.suffix == ".whl":
        with zipfile.ZipFile(wheel) as zf:
            name = next(n for n in zf.namelist() if n.endswith("resources/profanity/ru.csv"))
            text = zf.read(name).decode("utf-8")
    else:
        import tarfile

        with tarfile.open(wheel) as tf:
            member = next(m for m in tf.getmembers() if m.name.endswith("resources/profanity/ru.csv"))
            text = tf.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
    return list(csv.DictReader(io.StringIO(text)))


def lexicon_recall(judge: Judge, rows: list[dict[str, str]]) -> dict[str, Any]:
    """One sentence per lemma ("Вы {lemma}, а не поддержка."): the share of lemmas flagged, by kind. мат: the
    lemmas typed exactly "obscene" (not the euphemisms); insults: those typed "insulting", without the ethnic
    slurs (the issue asks for words that name a person)."""
    kinds: dict[str, set[str]] = {"мат": set(), "insults": set()}
    for row in rows:
        types = (row.get("profanityTypes") or "").strip()
        if types == "obscene":
            kinds["мат"].add(row["lemma"].strip())
        elif "insulting" in types and "ethnic" not in types:
            kinds["insults"].add(row["lemma"].strip())
    result: dict[str, Any] = {}
    for kind, lemmas in kinds.items():
        missed = sorted(w for w in lemmas if "profanity" not in judge.codes("", f"Вы {w}, а не поддержка."))
        flagged = len(lemmas) - len(missed)
        result[kind] = {"flagged": flagged, "of": len(lemmas),
                        "recall": round(flagged / len(lemmas), 3) if lemmas else 1.0, "missed": missed}
    return result


async def run(opts: Any) -> dict[str, Any]:
    judge, rules_alone = Judge(), Judge(model=False)
    corpus = load_corpus()
    result: dict[str, Any] = {}
    # The tune part is judged by the rules alone: the models were trained on it and would only repeat its
    # labels. The test part both ways, so the models' share shows.
    for part, label, j in (("tune", "tune (rules alone)", rules_alone), ("test", "test", judge),
                           ("test", "test (rules alone)", rules_alone)):
        figures, misses = scores(j, [r for r in corpus if r["split"] == part])
        for code, f in figures.items():
            if label == "test (rules alone)" and code == "profanity":
                continue  # no model there
            result[f"{label} {code} precision"] = f["precision"]
            result[f"{label} {code} recall"] = f["recall"]
            result[f"{label} {code} tp/fp/fn"] = f"{f['tp']}/{f['fp']}/{f['fn']}"
        if label == "test" and getattr(opts, "show_test_misses", False):
            print("\n".join(misses) or "no misses on the test part", file=sys.stderr)
        elif label == "test":
            print(f"{len(misses)} misses on the test part (--show-test-misses lists them)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="slaviclean-") as tmp:
        try:
            lex = lexicon_recall(judge, slaviclean_rows(Path(tmp)))
        except (subprocess.CalledProcessError, StopIteration, OSError) as exc:
            lex = {}
            result["slaviclean"] = f"not measured: {exc}"
    for kind, f in lex.items():
        result[f"slaviclean {kind} recall"] = f"{f['recall']} ({f['flagged']}/{f['of']})"
        print(f"slaviclean {kind} missed: {', '.join(f['missed'])}", file=sys.stderr)
    return result


if __name__ == "__main__":
    for part in ("tune", "test"):
        figures, misses = scores(Judge(), [r for r in load_corpus() if r["split"] == part and (part == "tune"
                                                                                               or "-t" in sys.argv)])
        print(part, json.dumps(figures))
        if "-v" in sys.argv:
            print("\n".join(misses))
