"""Parse a big email without walking its base64 attachments line by line.

The stdlib's feed parser reads a body one line at a time and tries the enclosing MIME boundaries on each
line: a 200 KB base64 attachment is ~3,700 lines and ~4 ms of Python, ten times the cost of the rest of
the mail. Its content never changes the structure, though: a line of base64 letters can be neither a
boundary (those start with "--"), nor a blank line, nor a header of the part it sits in.

So before parsing, every long run of base64-only lines that starts a body (it follows a blank line) is
replaced by one line holding a token unique to this parse, and after parsing the token in each part's
payload is swapped back for the original text. The parser sees the same sequence of line kinds, so it
builds the same tree; the payload strings are exactly the ones it would have read. As a belt to those
braces, every token must come back at the start of the payload of a leaf part with
`Content-Transfer-Encoding: base64` whose type is not text, message or multipart; if any does not (a
token in a preamble, an odd layout), the caller parses the original bytes instead.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from email.message import Message

# Bodies shorter than this are not worth it: the parser's per-line cost is ~1 us, a body of 32 KB ~0.4 ms.
MIN_ELIDED_BYTES = 32 * 1024
# Mail shorter than this has no such body; it is parsed as it is without looking.
MIN_MESSAGE_BYTES = 2 * MIN_ELIDED_BYTES
_BASE64_LINE_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n"
_NOT_LEAF_TYPES = ("text", "message", "multipart")
_TOKEN = re.compile(r"STOREOLISELIDED[0-9A-F]{16}N[0-9]+X")


def _blank_line_end(raw: bytes, start: int, stop: int) -> int:
    """Index just after the first blank line in raw[start:stop], or -1."""
    ends = [i for i in (raw.find(b"\n\n", start, stop), raw.find(b"\n\r\n", start, stop)) if i >= 0]
    if not ends:
        return -1
    first = min(ends)
    return first + (2 if raw[first + 1 : first + 2] == b"\n" else 3)


def elide_base64_bodies(raw: bytes) -> tuple[bytes, dict[str, str]]:
    """`raw` with every long base64-only run at the start of a body replaced by a token line, and the
    map token -> original text. Bodies end where a line starting with "--" (a boundary) or the mail ends.
    Returns (raw, {}) when there is nothing to elide."""
    if len(raw) < MIN_MESSAGE_BYTES:
        return raw, {}
    nonce = secrets.token_hex(8).upper()
    pieces: list[bytes] = []
    elided: dict[str, str] = {}
    copied = 0  # raw[:copied] is already in pieces
    segment = 0
    while segment < len(raw):
        next_dash = raw.find(b"\n--", segment)
        segment_end = len(raw) if next_dash < 0 else next_dash
        body = _blank_line_end(raw, segment, segment_end)
        if body >= 0 and segment_end - body >= MIN_ELIDED_BYTES:
            block_end = segment_end
            while block_end > body and raw[block_end - 1] in b"\r\n":
                block_end -= 1
            block = raw[body:block_end]
            # Base64 letters and line ends only, and a first line that is not empty (it would end a
            # header section of a part without headers differently than the token line would).
            if (
                len(block) >= MIN_ELIDED_BYTES
                and block[:1] not in b"\r\n"
                and not block.translate(None, _BASE64_LINE_BYTES)
            ):
                token = f"STOREOLISELIDED{nonce}N{len(elided)}X"
                elided[token] = block.decode("ascii")
                pieces.append(raw[copied:body])
                pieces.append(token.encode("ascii"))
                copied = block_end
        if next_dash < 0:
            break
        segment = next_dash + 3
    if not elided:
        return raw, {}
    pieces.append(raw[copied:])
    return b"".join(pieces), elided


def transfer_encoding(part: Message) -> str:
    """The part's first Content-Transfer-Encoding, lower-cased ("" without one), read from the raw
    headers (no header object is built)."""
    for name, value in part.raw_items():
        if str(name).lower() == "content-transfer-encoding":
            return str(value).strip().lower()
    return ""


def restore_elided(msg: Message, elided: dict[str, str]) -> bool:
    """Put the original text back into every part that got a token. False when a token is not where
    it must be (then `msg` is not the parse of the original bytes and must be dropped)."""
    remaining = dict(elided)
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload()
        found = _TOKEN.match(payload) if isinstance(payload, str) else None
        if found is None or found.group() not in remaining:
            continue  # a client's own text that looks like a token is not ours: the nonce differs
        token = found.group()
        rest = payload[len(token) :]
        if (
            rest[:1] not in ("", "\r", "\n")  # the token must be a whole line
            or part.get_content_maintype() in _NOT_LEAF_TYPES
            or transfer_encoding(part) != "base64"
        ):
            return False
        part.set_payload(remaining.pop(token) + rest)
    return not remaining


def parse_eliding(raw: bytes, parse: Callable[[bytes], Message]) -> Message:
    """`parse(raw)`, with long base64 bodies kept away from the line-by-line parser when that is safe."""
    shortened, elided = elide_base64_bodies(raw)
    if not elided:
        return parse(raw)
    try:
        msg = parse(shortened)
        if restore_elided(msg, elided):
            return msg
    except Exception:  # whatever went wrong, the plain parse decides (and raises, if it must)
        pass
    return parse(raw)
