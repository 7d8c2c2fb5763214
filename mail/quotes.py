"""Separate what the sender wrote now from quoted history and signatures.

Two entry points: `strip_html_quotes` removes the quote containers mail clients put into HTML before the
HTML is turned into text, and `split_quoted` cuts plain text at "> " lines, attribution lines
("On ... wrote:", "пн, 6 окт. 2025 г. в 14:32, Имя <a@b>:"), Outlook header blocks, forward markers and
signatures. Both are pure functions of their input; neither ever raises on odd text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

# ---- plain text -----------------------------------------------------------------------------------------

_QUOTE_LINE = re.compile(r"^[ \t]*>")
_BLANK = re.compile(r"^\s*$")
# Compiled here, not passed to re.sub as a string: the email parser compiles a new regex for every
# multipart boundary, which keeps evicting string patterns from re's small cache.
_EXTRA_BLANK_LINES = re.compile(r"\n{3,}")

_EMAIL = r"[^\s@<>\"(),;:]+@[^\s@<>\"(),;:]+"
_TIME = r"\d{1,2}:\d{2}"
_WROTE_WORDS = (
    r"(?:wrote|writes|пишет|написал|написала|написал\(а\)|писал|писала|писал\(а\)|"
    r"schrieb|a écrit|escribió|scrisse)"
)
_ATTRIBUTIONS: tuple[re.Pattern[str], ...] = (
    # Gmail/Thunderbird/Apple/The Bat! en+ru: "..., Name <a@b> wrote:", "..., Иван пишет:", "... написал(а):"
    re.compile(rf"^(?=.*\d).{{3,300}}\b{_WROTE_WORDS}\s*:\s*$", re.IGNORECASE),
    re.compile(rf"^(?=.*(?:{_EMAIL}|\d)).{{3,300}}\s{_WROTE_WORDS}\s*:\s*$", re.IGNORECASE),
    # The Bat!: "Вы писали 6 октября 2025 г., 14:32:" / "You wrote on ...:" / "Monday, ..., you wrote:"
    re.compile(r"^(?:Вы\s+писали|You\s+wrote)\b.{0,200}:\s*$", re.IGNORECASE),
    re.compile(r"^.{0,200}\byou\s+wrote\s*:\s*$", re.IGNORECASE),
    # Gmail ru / Yandex / Mail.ru: a date and time, then an address, the line ends with ">:" or "@host:"
    re.compile(rf"^(?=.*{_TIME}).{{0,300}}(?:<{_EMAIL}>|{_EMAIL})\s*:\s*$"),
    # Mail.ru without an address: "Понедельник, 6 октября 2025, 14:32 +03:00 от Иван Петров:"
    re.compile(rf"^.{{0,60}}\d{{4}}.{{0,20}}{_TIME}.{{0,30}}\sот\s.{{1,200}}:\s*$", re.IGNORECASE),
)
# Evidence that an attribution line really introduces history (not "as the manager wrote:" in own text).
_STRONG_ATTRIBUTION = re.compile(rf"{_EMAIL}|{_TIME}|\d{{4}}")
# The Bat! template greeting that precedes "Вы писали": part of the quoting boilerplate.
_BAT_GREETING = re.compile(r"^(?:Здравствуйте|Hello|Привет),?\s+[^\s].{0,60}[.,!]\s*$", re.IGNORECASE)
_BAT_WROTE = re.compile(r"^(?:Вы\s+писали|You\s+wrote)\b", re.IGNORECASE)

_SEPARATOR = re.compile(
    r"^\s*[-_=*]{2,}\s*(?:Original Message|Исходное сообщение|Оригинальное сообщение|Reply message|"
    r"Ответное сообщение)\s*[-_=*]{2,}\s*$",
    re.IGNORECASE,
)
_FORWARD = re.compile(
    r"^\s*(?:[-_=*]{2,}\s*(?:Forwarded message|Пересылаемое сообщение|Перенаправленное сообщение|"
    r"Пересланное сообщение|Forwarded Message|Переадресованное сообщение)\s*[-_=*]{2,}|"
    r"Begin forwarded message:|Начало переадресованного сообщения:|Пересылаемое сообщение:?)\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{8,}\s*$")
_HEADER_FROM = re.compile(r"^\s*(?:\*\*)?(?:From|От кого|От|Від|Von|De)\s*:", re.IGNORECASE)
_HEADER_OTHER = re.compile(
    r"^\s*(?:\*\*)?(?:Sent|Date|To|Cc|Subject|Отправлено|Дата|Кому|Копия|Тема|Gesendet|An|Betreff)\s*:",
    re.IGNORECASE,
)

_SIGNATURE_DASHES = re.compile(r"^--[ \t]*$")
_VALEDICTION = re.compile(
    r"^\s*(?:С\s+уважением|С\s+наилучшими\s+пожеланиями|Best\s+regards|Kind\s+regards|Warm\s+regards|"
    r"Regards|Best\s+wishes|Sincerely|Всего\s+доброго|Всего\s+хорошего)\b[\s,.!]*\S?.{0,60}$",
    re.IGNORECASE,
)
_DEVICE_FOOTER = re.compile(
    r"^\s*(?:Отправлено\s+(?:с|из|со)\s+\S.{0,60}|Sent\s+(?:from|with|via)\s+\S.{0,60}|"
    r"Get\s+Outlook\s+for\s+\S.{0,30}|Получить\s+Outlook\s+для\s+\S.{0,30}|"
    r"Скачайте\s+Outlook\s+для\s+\S.{0,30})\s*$",
    re.IGNORECASE,
)
# A valediction only starts a signature when little text follows it (before the next quote or the end).
_MAX_SIGNATURE_LINES = 10


def _any_of(*patterns: re.Pattern[str]) -> re.Pattern[str]:
    """One regex matching exactly where one of `patterns` matches (each keeps its IGNORECASE flag): a
    cheap first test for a line that would otherwise be tried against each pattern in turn."""
    return re.compile("|".join(f"(?{'i' if p.flags & re.IGNORECASE else ''}:{p.pattern})" for p in patterns))


# Most lines start nothing: one regex call rules out the patterns `_history_start` / `_signature_end` try.
_HISTORY_LINE = _any_of(_FORWARD, _SEPARATOR, _UNDERSCORES, _HEADER_FROM)
_SIGNATURE_LINE = _any_of(_DEVICE_FOOTER, _SIGNATURE_DASHES, _VALEDICTION)


@dataclass(frozen=True, slots=True)
class SplitText:
    new_text: str
    quoted_text: str
    forwarded: bool = False  # new_text is forwarded content because the sender wrote nothing of their own


def _ends_with_colon(text: str) -> bool:
    """Whether `text` ends with ":" and optional whitespace. Every pattern in `_ATTRIBUTIONS` ends that
    way (colon, whitespace class, end anchor), so text failing this cheap test cannot match any of them
    and their backtracking scans are skipped. The test is exact, not a heuristic: `str.rstrip()` strips
    the same characters the regex whitespace class matches (both use Unicode isspace), and lines never
    contain a newline (the only place the end anchor could match before the end)."""
    return text.rstrip().endswith(":")


def _is_attribution(text: str) -> bool:
    return _ends_with_colon(text) and any(p.match(text) for p in _ATTRIBUTIONS)


def _attribution_length(lines: list[str], i: int) -> int:
    """Number of lines (1 or 2; 3 for The Bat! greeting + blank + "Вы писали") forming an attribution at i."""
    line = lines[i]
    if _QUOTE_LINE.match(line) or _BLANK.match(line) or len(line) > 400:
        return 0
    if _BAT_GREETING.match(line):
        j = i + 1
        while j < len(lines) and j <= i + 3 and _BLANK.match(lines[j]):
            j += 1
        if j < len(lines) and _BAT_WROTE.match(lines[j]):
            rest = _attribution_length(lines, j)
            if rest:
                return j - i + rest
    if _is_attribution(line):
        return 1
    # Gmail wraps long attributions: "On ..., Name <" / "name@host> wrote:" or at a space.
    # The glued text ends with the stripped next line, so that line must end with ":" (checked first).
    if (
        i + 1 < len(lines)
        and _ends_with_colon(lines[i + 1])
        and not _BLANK.match(lines[i + 1])
        and not _QUOTE_LINE.match(lines[i + 1])
    ):
        nxt = lines[i + 1].strip()
        glued = line.rstrip() + ("" if line.rstrip().endswith("<") else " ") + nxt
        if len(glued) <= 400 and _is_attribution(glued):
            return 2
    return 0


def _header_block_at(lines: list[str], i: int) -> bool:
    """An Outlook-style header block ("От:/Отправлено:/Кому:/Тема:") starts at line i."""
    if not _HEADER_FROM.match(lines[i]):
        return False
    others = sum(1 for line in lines[i + 1 : i + 6] if _HEADER_OTHER.match(line))
    return others >= 2


def _history_start(lines: list[str], i: int) -> str | None:
    """Kind of history that starts at line i and runs to the end ("forward" or "history"), or None."""
    line = lines[i]
    if not _HISTORY_LINE.match(line):  # each branch below needs one of its patterns to match line i
        return None
    if _FORWARD.match(line):
        return "forward"
    if _SEPARATOR.match(line):
        return "history"
    if _UNDERSCORES.match(line):
        j = i + 1
        while j < len(lines) and _BLANK.match(lines[j]):
            j += 1
        if j < len(lines) and _header_block_at(lines, j):
            return "history"
        return None
    if _header_block_at(lines, i):
        return "history"
    return None


def _is_cut(lines: list[str], i: int) -> bool:
    return bool(_QUOTE_LINE.match(lines[i]) or _history_start(lines, i) or _attribution_length(lines, i))


def _signature_end(lines: list[str], i: int) -> int:
    """If a signature starts at line i, the index where it ends (next quote/history line or the end); else 0."""
    line = lines[i]
    if not _SIGNATURE_LINE.match(line):  # each branch below needs one of its patterns to match line i
        return 0
    if _DEVICE_FOOTER.match(line):
        return i + 1
    dashes = bool(_SIGNATURE_DASHES.match(line))
    if not dashes and not _VALEDICTION.match(line):
        return 0
    j = i + 1
    content = 0
    while j < len(lines) and not _is_cut(lines, j):
        if not _BLANK.match(lines[j]):
            content += 1
            if not dashes and content > _MAX_SIGNATURE_LINES:
                # "С уважением к вашему труду, ..." followed by a whole letter is not a signature. Said as
                # soon as it is known: scanning on to the end from every such line was quadratic in lines.
                return 0
        j += 1
    return j


def squeeze_blank_lines(text: str) -> str:
    """Runs of 3+ newlines become 2. The regex scans every character (~9 ns each) while the substring
    test is a fast search, and the regex only changes text that contains three newlines in a row."""
    return _EXTRA_BLANK_LINES.sub("\n\n", text) if "\n\n\n" in text else text


def _join(lines: list[str]) -> str:
    text = "\n".join([line.rstrip() for line in lines])
    return squeeze_blank_lines(text).strip("\n").strip()


def split_quoted(text: str, *, _depth: int = 0) -> SplitText:
    """Split a plain-text body into what the sender wrote now and what was quoted or signed.

    Lines starting with ">" go to the quoted part (inline replies keep the answers between them). An
    attribution line before a ">" block goes with it; an attribution not followed by ">" lines, an
    Outlook separator or header block, or a forward marker starts history that runs to the end. When the
    sender's own text is empty and the history is a forward, the forwarded content is the new text."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    new: list[str] = []
    quoted: list[str] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        if _QUOTE_LINE.match(line):
            quoted.append(line)
            i += 1
            continue
        history = _history_start(lines, i)
        if history == "forward":
            own = _join(new)
            if not own and _depth < 5:
                return _forwarded(lines[i + 1 :], quoted, _depth)
            quoted.extend(lines[i:])
            break
        if history is not None:
            quoted.extend(lines[i:])
            break
        consumed = _attribution_length(lines, i)
        if consumed:
            j = i + consumed
            while j < n and _BLANK.match(lines[j]):
                j += 1
            if j < n and _QUOTE_LINE.match(lines[j]):
                quoted.extend(lines[i:j])  # attribution of a ">" block: text after the block is new again
                i = j
                continue
            if _STRONG_ATTRIBUTION.search(" ".join(lines[i : i + consumed])):
                quoted.extend(lines[i:])  # unprefixed history (HTML converted, Outlook-like clients)
                break
            # "...менеджер написал:" in the sender's own words, with nothing quoted after it: keep it.
        end = _signature_end(lines, i)
        if end:
            quoted.extend(lines[i:end])
            i = end
            continue
        new.append(line)
        i += 1
    return SplitText(new_text=_join(new), quoted_text=_join(quoted))


def _forwarded(rest: list[str], quoted_before: list[str], depth: int) -> SplitText:
    """New text of a bare forward: the forwarded header lines, then the forwarded body's own new text."""
    header: list[str] = []
    k = 0
    while k < len(rest) and _BLANK.match(rest[k]):
        k += 1
    while k < len(rest) and (_HEADER_FROM.match(rest[k]) or _HEADER_OTHER.match(rest[k])):
        header.append(rest[k].strip())
        k += 1
    inner = split_quoted("\n".join(rest[k:]), _depth=depth + 1)
    new_text = _join([*header, "", inner.new_text]) if header else inner.new_text
    quoted = _join([*quoted_before, inner.quoted_text]) if quoted_before else inner.quoted_text
    return SplitText(new_text=new_text, quoted_text=quoted, forwarded=True)


# ---- HTML -----------------------------------------------------------------------------------------------

_VOID_TAGS = frozenset("area base br col embed hr img input link meta param source track wbr".split())


def _is_quote_container(tag: str, attrs: dict[str, str]) -> str | None:
    """ "element" to drop the element, "rest" to drop it and everything after it, None to keep it."""
    classes = attrs.get("class", "").lower().split()
    element_id = attrs.get("id", "").lower()
    if element_id in ("divrplyfwdmsg", "appendonsend"):
        return "rest"
    if "gmail_quote" in classes or "gmail_quote_container" in classes or "moz-cite-prefix" in classes:
        return "element"
    if "yahoo_quoted" in classes or "moz-forward-container" in classes:
        return "element"
    if tag == "blockquote" and attrs.get("type", "").lower() == "cite":
        return "element"
    return None


class _QuoteFinder(HTMLParser):
    """Records character ranges of quote containers (and of each top-level blockquote) in the HTML."""

    def __init__(self, line_offsets: list[int]) -> None:
        super().__init__(convert_charrefs=True)
        self._line_offsets = line_offsets
        self.ranges: list[tuple[int, int]] = []
        self.cut_rest_at: int | None = None
        self.last_blockquote: tuple[int, int] | None = None
        self.text_after_blockquote = False
        self._open: list[tuple[str, int, int]] = []  # (tag, nesting depth of that tag, start offset)
        self._depth: dict[str, int] = {}
        self._blockquote_start: int | None = None
        self._blockquote_depth = 0

    def _offset(self) -> int:
        line, col = self.getpos()
        return self._line_offsets[line - 1] + col

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS or self.cut_rest_at is not None:
            return
        depth = self._depth.get(tag, 0) + 1
        self._depth[tag] = depth
        start = self._offset()
        if tag == "blockquote":
            self._blockquote_depth += 1
            if self._blockquote_depth == 1:
                self._blockquote_start = start
        if self._open:
            return  # already inside a container being removed
        verdict = _is_quote_container(tag, {k.lower(): (v or "") for k, v in attrs})
        if verdict == "rest":
            self.cut_rest_at = start
        elif verdict == "element":
            self._open.append((tag, depth, start))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.cut_rest_at is None and not self._open:
            verdict = _is_quote_container(tag, {k.lower(): (v or "") for k, v in attrs})
            if verdict == "rest":
                self.cut_rest_at = self._offset()

    def handle_endtag(self, tag: str) -> None:
        if self.cut_rest_at is not None:
            return
        depth = self._depth.get(tag, 0)
        if depth <= 0:
            return  # stray end tag
        self._depth[tag] = depth - 1
        end = self._end_of_tag()
        if tag == "blockquote":
            self._blockquote_depth = max(0, self._blockquote_depth - 1)
            if self._blockquote_depth == 0 and self._blockquote_start is not None:
                self.last_blockquote = (self._blockquote_start, end)
                self.text_after_blockquote = False
                self._blockquote_start = None
        if self._open and self._open[-1][0] == tag and self._open[-1][1] == depth:
            _, _, start = self._open.pop()
            self.ranges.append((start, end))

    def _end_of_tag(self) -> int:
        offset = self._offset()
        raw = self.rawdata
        close = raw.find(">", offset)
        return len(raw) if close < 0 else close + 1

    def handle_data(self, data: str) -> None:
        if data.strip() and self._blockquote_depth == 0 and not self._open:
            self.text_after_blockquote = True

    def finish(self, total: int) -> None:
        for _, _, start in self._open:
            self.ranges.append((start, total))  # never closed: runs to the end
        self._open.clear()


@dataclass(frozen=True, slots=True)
class SplitHtml:
    new_html: str
    quoted_html: str


def strip_html_quotes(html: str) -> SplitHtml:
    """Remove quote containers from HTML: `.gmail_quote`, `blockquote[type=cite]`, `.moz-cite-prefix`,
    `#divRplyFwdMsg` / `#appendonsend` and everything after them, and a blockquote that ends the message.
    Returns the remaining HTML and the removed HTML (joined). Unparseable HTML is returned unchanged."""
    line_offsets = [0]
    for match in re.finditer("\n", html):
        line_offsets.append(match.end())
    finder = _QuoteFinder(line_offsets)
    try:
        finder.feed(html)
        finder.close()
    except Exception:  # html.parser is lenient, but a mail must not stop intake if it is not
        return SplitHtml(new_html=html, quoted_html="")
    finder.finish(len(html))
    ranges = list(finder.ranges)
    if finder.cut_rest_at is not None:
        ranges.append((finder.cut_rest_at, len(html)))
    elif finder.last_blockquote is not None and not finder.text_after_blockquote:
        ranges.append(finder.last_blockquote)
    if not ranges:
        return SplitHtml(new_html=html, quoted_html="")
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    kept: list[str] = []
    removed: list[str] = []
    pos = 0
    for start, end in merged:
        kept.append(html[pos:start])
        removed.append(html[start:end])
        pos = end
    kept.append(html[pos:])
    return SplitHtml(new_html="".join(kept), quoted_html="\n".join(removed))
