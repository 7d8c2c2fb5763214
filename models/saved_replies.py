"""Saved replies (issue 20): a staff reply kept under a name and sent to a client with its variables filled.

Two sources, one list: replies saved from the chat (`/savereply`, table `saved_reply`) and replies shipped
in `replies.toml` (CONFIG_DIR, else config/). A name saved in the chat wins over the file's, so a team can
adjust a shipped text without editing files; the file's replies cannot be deleted from the chat (the next
start would bring them back, which would surprise whoever deleted them).

Variables are `{name}` fields of Python's format syntax (`{{` and `}}` write a brace). Only the names in
VARIABLES are allowed, checked when saving (and when loading the file), so a typo is refused at once with
the valid names instead of reaching a client as a literal "{clinet}".
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from models.tables import SavedReply, StaffMember

# The variables a saved reply may use; their values come from the ticket and the sender (SavedReplies.fill).
VARIABLES: tuple[str, ...] = ("client", "contact", "ticket", "deadline", "agent", "faq_links")
NAME_PATTERN = re.compile(r"^[\w.-]{1,64}$")
TEXT_LIMIT = 4000  # what one Telegram message can carry back as a preview


class SavedReplyError(ValueError):
    """A saved reply that cannot be kept; `code` names the problem for the staff side to word."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code  # bad_name | empty | too_long | unknown_variables | bad_syntax | from_file | not_found
        self.detail = detail


@dataclass(frozen=True)
class Reply:
    name: str
    text: str
    from_file: bool = False


def normalise_name(name: str) -> str:
    return name.strip().lower()


def check(name: str, text: str) -> str:
    """The normalised name of a reply that can be saved; raises SavedReplyError otherwise."""
    key = normalise_name(name)
    if not NAME_PATTERN.match(key):
        raise SavedReplyError("bad_name", name[:64])
    if not text.strip():
        raise SavedReplyError("empty")
    if len(text) > TEXT_LIMIT:
        raise SavedReplyError("too_long", str(TEXT_LIMIT))
    unknown = sorted(set(variables_of(text)) - set(VARIABLES))
    if unknown:
        raise SavedReplyError("unknown_variables", ", ".join(unknown))
    return key


def variables_of(text: str) -> list[str]:
    """The field names a text uses; raises SavedReplyError on a brace the format syntax cannot read
    (a lone `{`), or a field with an attribute, index, conversion or format spec (only bare names)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise SavedReplyError("bad_syntax", str(error)) from error
    names = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise SavedReplyError("bad_syntax", "{" + field + "}")
        names.append(field)
    return names


def fill(text: str, values: Mapping[str, str]) -> str:
    """The text with its variables replaced. A value is inserted as is, never parsed again, so a client
    name with braces in it cannot inject a field."""
    return string.Formatter().vformat(text, (), {name: values.get(name, "") for name in VARIABLES})


def load_file(path: Path) -> dict[str, Reply]:
    """The replies of a `replies.toml`: a table per reply, `[name]` with `text = "..."`. A reply the
    checks refuse stops the load with the file and the name (settings are checked at start)."""
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    replies: dict[str, Reply] = {}
    for name, entry in data.items():
        text = entry.get("text") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            raise SavedReplyError("bad_syntax", f"{path}: [{name}] needs text = \"...\"")
        try:
            key = check(name, text)
        except SavedReplyError as error:
            raise SavedReplyError(error.code, f"{path}: [{name}] {error.detail}".strip()) from error
        replies[key] = Reply(key, text, from_file=True)
    return replies


class SavedReplies:
    """The saved replies of the desk: the file's and the chat's, looked up by name."""

    def __init__(self, shipped: Mapping[str, Reply] | None = None) -> None:
        self.shipped = dict(shipped or {})

    async def save(self, name: str, text: str, staff: StaffMember | None) -> tuple[Reply, bool]:
        """Create or replace; returns the reply and whether it replaced one of the same name."""
        key = check(name, text)
        row = await SavedReply.get_or_none(name=key)
        replaced = row is not None or key in self.shipped
        if row is None:
            await SavedReply.create(name=key, text=text, created_by_id=staff.id if staff else None)
        else:
            await SavedReply.filter(id=row.id).update(text=text, created_by_id=staff.id if staff else None)
        return Reply(key, text), replaced

    async def delete(self, name: str) -> Reply:
        key = normalise_name(name)
        deleted = await SavedReply.filter(name=key).delete()
        if deleted:
            return Reply(key, "")
        if key in self.shipped:
            raise SavedReplyError("from_file", key)
        raise SavedReplyError("not_found", key)

    async def get(self, name: str) -> Reply | None:
        key = normalise_name(name)
        row = await SavedReply.get_or_none(name=key)
        if row is not None:
            return Reply(row.name, row.text)
        return self.shipped.get(key)

    async def all(self) -> list[Reply]:
        """Every reply by name; a chat reply hides the file's of the same name."""
        replies = dict(self.shipped)
        for row in await SavedReply.all():
            replies[row.name] = Reply(row.name, row.text)
        return [replies[name] for name in sorted(replies)]
