"""Linear-time scans for patterns that begin with a run of one character class.

Python's `re` tries a pattern at every position of the text. A pattern such as an email address,
`[\\w.+-]+@[\\w-]+(?:\\.[\\w-]+)+`, scans the whole run of word characters from each start and then fails
when no "@" follows: on a 20 KB word that is 200 million steps, quadratic in the run's length
(issue 16: 10 KB 0.63 s, 40 KB 7.7 s). `RunScan` gives the matches of `finditer`/`findall`/`sub`
exactly, in linear time, from two compilations of the pattern:

- `anywhere`: the pattern as written;
- `at_run_start`: the same pattern that also refuses to start where a match at the position before
  would exist (for a run pattern: a lookbehind that the previous character is not of the run's class).

Contract (checked by tests/test_text_scan.py on random texts): at every position, `at_run_start`
either matches exactly as `anywhere` does (same span) or does not match; and where it does not but
`anywhere` does, `anywhere` also matches one position earlier. Then the leftmost match at or after
`pos` is `anywhere.match(text, pos)` or else `at_run_start.search(text, pos + 1)`: a start inside a
run is rejected by one look at the previous character instead of a scan to the end of the run.
Neither pattern may match the empty string.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Iterator


class RunScan:
    """`finditer`, `findall` and `sub` of `anywhere` in linear time (see the module docstring)."""

    __slots__ = ("anywhere", "at_run_start")

    def __init__(self, anywhere: str, at_run_start: str, flags: int = 0) -> None:
        self.anywhere = re.compile(anywhere, flags)
        self.at_run_start = re.compile(at_run_start, flags)

    @classmethod
    def run(cls, run_class: str, rest: str, flags: int = 0) -> RunScan:
        """The pattern `run_class+` followed by `rest`, e.g. `run(r"[\\w.+-]", r"@[\\w-]+(?:\\.[\\w-]+)+")`."""
        return cls(f"{run_class}+{rest}", f"(?<!{run_class}){run_class}+{rest}", flags)

    @property
    def pattern(self) -> str:
        return self.anywhere.pattern

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        pos, end = 0, len(text)
        while pos < end:
            found = self.anywhere.match(text, pos) or self.at_run_start.search(text, pos + 1)
            if found is None:
                return
            yield found
            pos = found.end()

    def findall(self, text: str) -> list[str]:
        """Like `re.findall` for a pattern without groups: the matched texts."""
        return [m.group() for m in self.finditer(text)]

    def sub(self, replacement: str, text: str) -> str:
        """Like `re.sub` with a plain replacement string (no group references)."""
        pieces: list[str] = []
        last = 0
        for m in self.finditer(text):
            pieces += (text[last : m.start()], replacement)
            last = m.end()
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)


def tags_removed(html: str, replacement: str = " ") -> str:
    """`re.sub(r"<[^>]*>", replacement, html)` in linear time. A "<" with no ">" after it can start no
    match, and `re` would otherwise scan to the end of the text from every such "<" ("<<<<..." is
    quadratic). Only the text up to the last ">" is searched; the rest is kept as it is."""
    cut = html.rfind(">") + 1
    return _TAG.sub(replacement, html[:cut]) + html[cut:]


_TAG = re.compile(r"<[^>]*>")


class Spans:
    """A set of (start, end) spans asked "does any of you cover this position / overlap this span?" in
    O(log n) each: a test against every span for every word or phrase is quadratic on a text with
    thousands of both (issue 16: the profanity detector on 64 K of "x@x." took 17 s)."""

    __slots__ = ("_reach", "_starts")

    def __init__(self, spans: Iterable[tuple[int, int]]) -> None:
        ordered = sorted(spans)
        self._starts = [start for start, _ in ordered]
        # The furthest end among the spans up to each index: spans may overlap or nest.
        self._reach = list(itertools.accumulate((end for _, end in ordered), max))

    def __bool__(self) -> bool:
        return bool(self._starts)

    def covers(self, pos: int) -> bool:
        """Some span has start <= pos < end."""
        i = bisect.bisect_right(self._starts, pos)
        return i > 0 and self._reach[i - 1] > pos

    def overlaps(self, start: int, end: int) -> bool:
        """Some span (s, e) has s < end and start < e."""
        i = bisect.bisect_left(self._starts, end)
        return i > 0 and self._reach[i - 1] > start
