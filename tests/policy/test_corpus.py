"""The labelled development corpus (tests/data/policy_corpus.jsonl) keeps its shape and its one split."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "data" / "policy_corpus.jsonl"
LABELS = {"out_of_scope", "in_scope", "profanity", "unclear"}


def load() -> list[dict[str, str]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def expected_split(row: dict[str, str]) -> str:
    key = (row["subject"] + "\n" + row["text"]).encode("utf-8")
    return "test" if int(hashlib.sha256(key).hexdigest()[:8], 16) % 100 < 30 else "tune"


def test_every_record_is_in_the_part_its_hash_puts_it_in() -> None:
    rows = load()
    moved = [r["text"][:60] for r in rows if r["split"] != expected_split(r)]
    assert moved == []
    assert all(r["label"] in LABELS and r["lang"] in ("ru", "en") for r in rows)
    assert len({(r["subject"], r["text"]) for r in rows}) == len(rows)  # no record twice


def test_the_corpus_has_the_size_and_spread_issue_17_asks_for() -> None:
    rows = load()
    out = [r for r in rows if r["label"] == "out_of_scope"]
    inside = [r for r in rows if r["label"] == "in_scope"]
    assert len(out) >= 300 and len({r["category"] for r in out}) >= 10
    assert sum(r["lang"] == "en" for r in out) >= 40
    assert len(inside) >= 300 and 3 * sum(r["category"] == "service_tech" for r in inside) >= len(inside)
    parts = Counter(r["split"] for r in rows)
    assert 0.25 <= parts["test"] / len(rows) <= 0.35
