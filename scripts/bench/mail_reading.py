"""7. Mail reading: how well reply extraction separates a client's new text from quoted history.

Scores the bridge on the peer projects' reply fixtures in `<repository parent>/shared/peer-mail/`
(`mpr.json` from mail-parser-reply, `erp.json` from email_reply_parser; format, licences and the fair
score in the README there). Each case's `input` becomes the body of a UTF-8 mail (`text/plain` or
`text/html`) and goes through `parse_message`, as intake would do it. A case is right when every
expected line with a letter or digit is in the new text and no quoted line is. The other outcomes:
"text dropped" (an expected line is missing: the client would lose words) and "quote leaked" (only
history shown too). The fixtures stay outside the repository; the project's tests use its own.

    python -m scripts.bench --only mail-reading --no-write
"""

from __future__ import annotations

import base64
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mail.parse import MAX_TEXT_CHARS, parse_message
from mail.quotes import _SIGNATURE_LINE
from scripts.bench.common import Options

REPO = Path(__file__).resolve().parents[2]
SETS = ("mpr", "erp")
_MEANINGFUL = re.compile(r"[^\W_]")  # a letter or digit: "____" and ">" lines carry no words


def peer_dir() -> Path:
    """`<repository parent>/shared/peer-mail` (CI has ../shared beside the clone). In a git worktree the
    repository's parent is the worktrees' folder: then the main checkout's parent is tried too."""
    candidates = [REPO.parent / "shared" / "peer-mail"]
    git = REPO / ".git"
    if git.is_file():  # "gitdir: <main checkout>/.git/worktrees/<name>"
        gitdir = Path(git.read_text(encoding="utf-8").partition("gitdir:")[2].strip())
        if gitdir.parent.name == "worktrees":
            candidates.append(gitdir.parents[2].parent / "shared" / "peer-mail")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"peer fixtures not found (looked in {', '.join(map(str, candidates))}): they live beside the "
        "repository in ../shared/peer-mail, as CI checks them out; put them there to run this evaluation"
    )


@dataclass
class SetScore:
    name: str
    total: int = 0
    right: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # an expected line is missing from the new text
    leaked: list[str] = field(default_factory=list)  # all expected lines there, but a quoted line too
    first_line: dict[str, str] = field(default_factory=dict)  # case id -> first missing or leaked line


def wrap(body: str, kind: str) -> bytes:
    """The fixture's body as a UTF-8 mail; base64 keeps every byte of the body as the client wrote it."""
    subtype = "html" if kind == "html" else "plain"
    encoded = base64.encodebytes(body.encode("utf-8")).decode("ascii")
    return (
        "From: Client <client@example.com>\r\nTo: support@storeolis.ru\r\nSubject: Re: request\r\n"
        "Date: Mon, 06 Oct 2025 14:32:00 +0300\r\nMessage-ID: <peer@example.com>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}"
    ).encode("ascii")


def _meaningful_lines(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if _MEANINGFUL.search(line)]


def _unsigned(lines: list[str]) -> list[str]:
    """The expected lines up to where the bridge would see a signature start ("-- ", a valediction, a
    device footer): the README's "signatures the bridge strips on purpose are not errors"."""
    kept: list[str] = []
    for line in lines:
        if _SIGNATURE_LINE.match(line):
            break
        kept.append(line)
    return _meaningful_lines(kept)


def score_case(case: dict[str, Any]) -> tuple[str, list[str]]:
    """("right" | "dropped" | "leaked", the offending lines) for one fixture."""
    message = parse_message(wrap(case["input"], case["type"]))
    new_text = message.new_text
    expected = _unsigned(case["expected"].splitlines())
    missing = [line for line in expected if line not in new_text]
    if missing:
        if any("truncated" in defect for defect in message.defects):
            missing.insert(0, f"(over the designed text limit of {MAX_TEXT_CHARS} characters)")
        return "dropped", missing
    # A quoted line leaks when it is a whole line of the new text: "y" or "Thanks," inside the client's
    # own sentences is not history shown again.
    new_lines = {line.strip() for line in new_text.splitlines()}
    # A line the fixture has both in its reply and in its history ("Am heutigen Tage") cannot leak.
    leaked = [
        line for line in _meaningful_lines(case["quoted_lines"]) if line in new_lines and line not in expected
    ]
    if leaked:
        return "leaked", leaked
    return "right", []


def score_set(folder: Path, name: str, verbose: bool = False) -> SetScore:
    cases = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    score = SetScore(name, total=len(cases))
    for case in cases:
        verdict, lines = score_case(case)
        {"right": score.right, "dropped": score.dropped, "leaked": score.leaked}[verdict].append(case["id"])
        if lines:
            score.first_line[case["id"]] = lines[0]
        if verbose:
            for line in lines[1:]:
                print(f"   {verdict}: {case['id']}: {line[:100]!r}", file=sys.stderr)
    return score


def report(score: SetScore) -> dict[str, Any]:
    print(
        f"{score.name}: right {len(score.right)}/{score.total}, text dropped {len(score.dropped)}, "
        f"quote leaked {len(score.leaked)}",
        file=sys.stderr,
    )
    for label, ids in (("text dropped", score.dropped), ("quote leaked", score.leaked)):
        for case_id in ids:
            print(f"  {label}: {case_id}: {score.first_line[case_id][:90]!r}", file=sys.stderr)
    return {
        f"{score.name} right": f"{len(score.right)}/{score.total}",
        f"{score.name} text dropped": len(score.dropped),
        f"{score.name} quote leaked": len(score.leaked),
        f"{score.name} failures": " ".join(case_id.rsplit("/", 1)[-1] for case_id in score.dropped + score.leaked)
        or "-",
    }


async def run(opts: Options) -> dict[str, Any]:
    folder = peer_dir()
    results: dict[str, Any] = {}
    for name in SETS:
        results.update(report(score_set(folder, name)))
    return results


if __name__ == "__main__":  # python -m scripts.bench.mail_reading: the scores with the offending lines
    for set_name in SETS:
        report(score_set(peer_dir(), set_name, verbose=True))
