"""Train the text rules' second opinions on the TUNING part of the labelled corpus and write their weights:
the out-of-scope model (models/policy/scope_model.py) to config/defaults/out_of_scope_model.json and the
nudge model (models/policy/nudge_model.py) to config/defaults/unclear_model.json. The test part is never
read: the corpus's split is what keeps `python -m scripts.bench --only policy-quality` honest.

    python -m scripts.train_text_models            # write the weights files
    python -m scripts.train_text_models --check    # exit 1 when a shipped file is not what training gives

Plain Python and deterministic (a fixed seed, a fixed order, rounded weights), so the shipped files can be
checked against their recipe by a test. Logistic regression with AdaGrad and an L2 penalty: a thousand
requests train in seconds, and scikit-learn would add a large dependency for a dot product at run time.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from models.policy import nudge_model, scope_model
from models.policy.base import DEFAULTS_DIR, PolicyConfig
from models.policy.rules.unclear import load_unclear_lexicon, own_part, without_signature
from models.policy.scope_model import ScopeModel
from models.policy.text_model import LinearModel, feature_names, linear_to_json
from scripts.bench.policy_quality import load_corpus

SEED = 7
EPOCHS = 40
L2 = 1e-3
RATE = 0.3
DIGITS = 3  # rounding of the shipped weights
# Weights smaller than these are dropped from the shipped files: they move no decision (the batch-grouped
# cross-validation gives the same figures without them) and keep the files small enough to review.
KEEP_SCOPE = 0.05
KEEP_TOPIC = 0.3


def train_linear(rows: Sequence[set[str]], labels: Sequence[int], epochs: int = EPOCHS,
                 keep: float = KEEP_SCOPE) -> LinearModel:
    """Logistic regression by AdaGrad over sparse binary features."""
    w: dict[str, float] = defaultdict(float)
    g2: dict[str, float] = defaultdict(float)
    bias, gb = 0.0, 0.0
    order = list(range(len(rows)))
    rnd = random.Random(SEED)
    for _ in range(epochs):
        rnd.shuffle(order)
        for i in order:
            feats = sorted(rows[i])
            z = bias + sum(w[f] for f in feats)
            p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
            g = p - labels[i]
            for f in feats:
                gf = g + L2 * w[f]
                g2[f] += gf * gf
                w[f] -= RATE * gf / math.sqrt(g2[f] + 1e-8)
            gb += g * g
            bias -= RATE * g / math.sqrt(gb + 1e-8)
    weights = {f: round(v, DIGITS) for f, v in w.items() if abs(v) >= keep}
    return LinearModel(round(bias, DIGITS), weights)


def request_features(rows: Sequence[dict[str, str]]) -> list[set[str]]:
    """What the rule gives the model at run time: the subject and the new text without its signature."""
    lexicon = load_unclear_lexicon(PolicyConfig())
    return [feature_names(r["subject"], without_signature(r["text"], lexicon)) for r in rows]


def build(rows: Sequence[dict[str, str]]) -> ScopeModel:
    """The out-of-scope model: out of scope or not, and one topic against the rest over the out-of-scope rows."""
    feats = request_features(rows)
    scope = train_linear(feats, [int(r["label"] == "out_of_scope") for r in rows])
    outside = [i for i, r in enumerate(rows) if r["label"] == "out_of_scope"]
    topics = {}
    for topic in sorted({rows[i]["category"] for i in outside}):
        topics[topic] = train_linear([feats[i] for i in outside],
                                     [int(rows[i]["category"] == topic) for i in outside], epochs=EPOCHS // 2,
                                     keep=KEEP_TOPIC)
    return ScopeModel(scope, topics, veto_below=0.0, rescue_above=1.0)


def build_nudge(rows: Sequence[dict[str, str]]) -> LinearModel:
    """The nudge model: unclear or not, over the subject and the client's own words, the new text without a
    reply's quote, as the rule reads them (the signature kept: a body that is only a signature is a kind of
    unclear). Abuse is left out: it may be unclear too (see the corpus README), so it teaches nothing either
    way."""
    rows = [r for r in rows if r["label"] != "profanity"]
    return train_linear([feature_names(r["subject"], own_part(r["text"])) for r in rows],
                        [int(r["label"] == "unclear") for r in rows])


def tuning_rows() -> list[dict[str, str]]:
    return [r for r in load_corpus() if r["split"] == "tune"]


def _meta(rows: Sequence[dict[str, str]], label: str) -> dict[str, object]:
    return {"trained_by": "python -m scripts.train_text_models", "corpus": "tests/data/policy_corpus.jsonl",
            "part": "tune", "requests": len(rows), label: sum(r["label"] == label for r in rows),
            "epochs": EPOCHS, "l2": L2, "rate": RATE, "seed": SEED}


def _dump(data: dict[str, object]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=0) + "\n"


def render() -> dict[str, str]:
    """File name -> its text."""
    rows = tuning_rows()
    nudge_rows = [r for r in rows if r["label"] != "profanity"]
    return {
        scope_model.MODEL_FILE: _dump(scope_model.model_to_json(build(rows), _meta(rows, "out_of_scope"))),
        nudge_model.MODEL_FILE: _dump({"meta": _meta(nudge_rows, "unclear"),
                                       "unclear": linear_to_json(build_nudge(rows))}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped files, write nothing")
    parser.add_argument("--out", type=Path, default=DEFAULTS_DIR, help="the folder of the weights files")
    args = parser.parse_args(argv)
    differ = 0
    for name, text in render().items():
        path = args.out / name
        if args.check:
            same = path.is_file() and path.read_text(encoding="utf-8") == text
            differ += not same
            print(f"{path}: {'matches its training' if same else 'differs from what training gives'}")
        else:
            path.write_text(text, encoding="utf-8")
            print(f"{path}: written ({len(text):,} characters)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
