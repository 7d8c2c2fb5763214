"""text-rules: the cost of the policy's text work on single-line bodies of 10 KB to 5 MB (issue 16).

In process, no servers. For each size and two kinds of line ("word": one long run of digits, what made
the address pattern quadratic; "words": Russian words separated by blanks), it times what a parse worker
does with such a mail (parse + every rule's `analyse`), each rule's `analyse` on the message as the
engine hands it over, and the patterns run on client text on the whole unbounded line. Growth is
visible by reading a row left to right: linear work grows tenfold from 100 KB to 1 MB.

`BENCH_TEXT_SIZES=10000,20000,40000` chooses other sizes (how the old code was measured: beyond 40 KB
its quadratic steps take minutes). A step that took over `BUDGET_S` is not run at the larger sizes.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from mail.parse import parse_message
from mail.quotes import split_quoted
from models.inbound import InboundMessage, MessageKind
from models.policy import PolicyConfig, PolicyEngine, base
from models.policy.analyser import _NoLookups
from models.policy.authresults import parse_authentication_results
from models.policy.rules import duplicates
from models.policy.rules.profanity import load_detector
from scripts.bench.common import Options, Result

SIZES = (10_000, 100_000, 1_000_000, 5_000_000)
BUDGET_S = 20.0


def _line(kind: str, size: int) -> str:
    if kind == "word":
        return ("Заявка " + "1" * size)[:size]
    rng = random.Random(size)
    words = ["выгрузка", "заказов", "не", "работает", "личный", "кабинет", "ошибка", "счёт", "оплата", "касса",
             "пожалуйста", "проверьте", "номер", "договора", "после", "обновления", "программы"]
    out: list[str] = []
    total = 0
    while total < size:
        word = rng.choice(words)
        out.append(word)
        total += len(word) + 1
    return " ".join(out)[:size]


def _mail(line: str) -> bytes:
    return ("From: Пётр <petrov@lyutik.ru>\r\nTo: support@storeolis.ru\r\nSubject: =?utf-8?b?0JfQsNGP0LLQutCw?=\r\n"
            "Message-ID: <big@lyutik.ru>\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n" + line + "\r\n").encode()


def _message(line: str) -> InboundMessage:
    return InboundMessage(
        raw_size=len(line), message_id="big@lyutik.ru", in_reply_to=None, references=[], resent_message_id=None,
        from_name="Пётр", from_address="petrov@lyutik.ru", reply_to=None, to=[], cc=[], delivered_to=[],
        subject="Заявка", date_header=None, text=line, new_text=line, quoted_text="", has_html=False,
        attachments=[], kind=MessageKind.REQUEST, kind_reason="", authentication_results=[],
    )  # fmt: skip


def _steps(engine: PolicyEngine) -> dict[str, Callable[[str], Any]]:
    view = getattr(base, "policy_view", lambda m: m)  # the old code handed every rule the whole message
    detector = load_detector(PolicyConfig())
    email = duplicates._EMAIL
    steps: dict[str, Callable[[str], Any]] = {
        "parse + analyse (a worker's whole job)": lambda line: engine.analyse(parse_message(_mail(line))),
    }
    for rule in engine.rules:
        def run(line: str, rule: Any = rule) -> Any:
            message = _message(line)
            return rule.analyse(view(message) if getattr(rule, "bounded_text", True) else message, engine.data)
        steps[f"rule {rule.name}"] = run
    steps.update({
        "pattern duplicates text_facts (whole line)": duplicates.text_facts,
        "pattern duplicates _EMAIL.sub (whole line)": lambda line: email.sub(" ", line),
        "pattern duplicates _URL.sub (whole line)": lambda line: duplicates._URL.sub(" ", line),
        "pattern profanity find (whole line)": detector.find,
        "pattern quotes split_quoted (whole line)": split_quoted,
        "pattern authresults (whole line as a header)": lambda line: parse_authentication_results("mx; " + line),
    })
    return steps


def measure(sizes: tuple[int, ...] = SIZES) -> dict[str, dict[str, dict[int, float | None]]]:
    """{kind: {step: {size: seconds or None (skipped)}}}."""
    engine = PolicyEngine(PolicyConfig(), _NoLookups())  # type: ignore[arg-type]
    engine.analyse(_message("Не работает выгрузка заказов"))  # the dictionaries, the caches
    results: dict[str, dict[str, dict[int, float | None]]] = {}
    for kind in ("word", "words"):
        lines = {size: _line(kind, size) for size in sizes}
        table: dict[str, dict[int, float | None]] = {}
        for name, step in _steps(engine).items():
            row: dict[int, float | None] = {}
            over = False
            for size in sizes:
                if over:
                    row[size] = None
                    continue
                started = time.perf_counter()
                step(lines[size])
                row[size] = time.perf_counter() - started
                over = row[size] > BUDGET_S
                print(f"  {kind} {name} {size}: {row[size]:.3f} s", file=sys.stderr, flush=True)
            table[name] = row
        results[kind] = table
    return results


def markdown(results: dict[str, dict[str, dict[int, float | None]]], sizes: tuple[int, ...]) -> str:
    def label(size: int) -> str:
        return f"{size // 1_000_000} MB" if size >= 1_000_000 else f"{size // 1000} KB"

    lines: list[str] = []
    for kind, table in results.items():
        lines += [f"Single line of {'one long word' if kind == 'word' else 'words and blanks'}, milliseconds:", "",
                  "| step | " + " | ".join(label(s) for s in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
        for name, row in table.items():
            cells = ["skipped" if row[s] is None else f"{row[s] * 1000:.1f}" for s in sizes]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


async def run(opts: Options) -> Result:
    env = os.environ.get("BENCH_TEXT_SIZES")
    sizes = tuple(int(s) for s in env.split(",")) if env else ((10_000, 100_000) if opts.quick else SIZES)
    results = measure(sizes)
    print(markdown(results, sizes))
    summary: Result = {}
    for kind, table in results.items():
        whole = table["parse + analyse (a worker's whole job)"]
        for size in sizes:
            value = whole[size]
            summary[f"{kind} {size} B parse+analyse ms"] = None if value is None else round(value * 1000, 1)
        summary[f"{kind} slowest step at {sizes[-1]} B"] = max(
            table, key=lambda name: table[name][sizes[-1]] or 0.0)
    return summary
