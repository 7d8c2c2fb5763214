"""What a parse worker hands back for one mail: the parsed message and the policy's text analyses of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from models.inbound import InboundMessage, without_nul


class AnalysedMail(NamedTuple):
    """A parsed mail with the policy's text analyses of it (None: not analysed; the rules do it)."""

    message: InboundMessage
    analyses: dict[str, Any] | None = None


def parse_and_analyse(
    raw: bytes,
    *,
    parser: Callable[[bytes], InboundMessage],
    analyser: Callable[[InboundMessage], dict[str, Any]] | None = None,
) -> AnalysedMail:
    """The work of a parse worker on one mail: parse, then the policy's text work on the result.
    NUL characters are dropped first, so the analyses see exactly the message the ticket will store."""
    message = without_nul(parser(raw))
    return AnalysedMail(message, analyser(message) if analyser is not None else None)
