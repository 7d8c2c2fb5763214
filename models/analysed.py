"""What a parse worker hands back for one mail: the parsed message and the policy's text analyses of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from models.inbound import InboundMessage, without_nul
from models.search_terms import index_terms


class AnalysedMail(NamedTuple):
    """A parsed mail with the policy's text analyses of it (None: not analysed; the rules do it)."""

    message: InboundMessage
    analyses: dict[str, Any] | None = None
    search: str | None = None  # the index terms of the search (models/search_terms.py), None: not made


def message_terms(message: InboundMessage) -> str:
    """The search index terms of an inbound message: its subject, new text and sender."""
    return index_terms((message.subject, message.new_text, message.from_name, message.from_address))


def parse_and_analyse(
    raw: bytes,
    *,
    parser: Callable[[bytes], InboundMessage],
    analyser: Callable[[InboundMessage], dict[str, Any]] | None = None,
) -> AnalysedMail:
    """The work of a parse worker on one mail: parse, then the policy's text work on the result.
    NUL characters are dropped first, so the analyses see exactly the message the ticket will store.
    With the analysis come the search terms: the analysis has just lemmatised the same texts, so they cost
    little more here, and nothing on the event loop."""
    message = without_nul(parser(raw))
    if analyser is None:
        return AnalysedMail(message)
    return AnalysedMail(message, analyser(message), message_terms(message))
