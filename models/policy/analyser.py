"""The policy's text work, run in the parse workers.

Most of a verdict's CPU is text work that needs no database: lemmatising the subject and the new text,
the phrase lists (scope, FAQ, password), the profanity detector, INNs and contract numbers, the content
hash. `PolicyEngine.analyse` does all of it; `TextAnalyser` is the picklable handle a process pool
needs, so under a backlog that work runs on both cores beside the parser instead of on the event loop,
which is left with the lookups. The verdict is the same either way (tests/policy/test_analyser.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from models.inbound import InboundMessage, MessageKind
from models.policy import PolicyConfig, PolicyEngine

# One short request through every rule also fills the first caches (lemmas of the commonest words).
_WARM_UP = InboundMessage(
    raw_size=0, message_id=None, in_reply_to=None, references=[], resent_message_id=None, from_name="Иван",
    from_address="ivan@example.org", reply_to=None, to=[], cc=[], delivered_to=[], subject="Не работает выгрузка",
    date_header=None, text="", new_text="Здравствуйте! Не открывается личный кабинет, ошибка при входе.",
    quoted_text="", has_html=False, attachments=[], kind=MessageKind.REQUEST, kind_reason="",
    authentication_results=[],
)  # fmt: skip


class _NoLookups:
    """The repository of an engine that only analyses: `analyse` asks the store nothing."""

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"the text analyser reads no database (asked for {name})")


@lru_cache(maxsize=4)
def _engine(config: PolicyConfig) -> PolicyEngine:
    # One engine (its data files, the morphology dictionaries) per worker process and configuration;
    # `analyse` never touches the repository, so no database is opened, nor tortoise imported, here.
    return PolicyEngine(config, _NoLookups())  # type: ignore[arg-type]


class TextAnalyser:
    """`message -> analyses` (`PolicyEngine.analyse`), built from `config` in the process that calls it."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config

    def __call__(self, message: InboundMessage) -> dict[str, Any]:
        return _engine(self.config).analyse(message)

    def warm(self) -> None:
        """Load the data files and the morphology dictionaries now (a worker does it when it starts)."""
        _engine(self.config).analyse(_WARM_UP)
