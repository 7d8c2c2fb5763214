"""The vocabulary of the policy chain: findings, the verdict, the request, the configuration and
the rule interface. Modelled on GNU Mailman's rules: each rule is a small class citing its clause of
the support regulations, and records readable evidence for the staff card.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from models.inbound import InboundMessage

if TYPE_CHECKING:
    from models.policy.records import PolicyRepository

Severity = Literal["block", "warn", "info"]
Suggestion = Literal["accept", "refuse", "answer_faq"]

DEFAULTS_DIR = Path(__file__).resolve().parents[2] / "config" / "defaults"

# The rules read at most this many characters of a mail's subject, new text and sender name (issue 16).
# Why: what a request is about, who sent it and whether it is rude are written at its start; 64 K
# characters are some 10,000 words, thirty pages, while a request is a few hundred words and the staff
# card shows 4,000 characters. Past it, each further megabyte a client sends would cost the parse workers
# seconds of lemmatising (one dictionary parse per new word) and make the rules' evidence no better.
# The parser already keeps at most 200,000 characters of a body (mail/parse.py MAX_TEXT_CHARS). Only the
# duplicate rule's content hash reads the whole new text: it is linear and must not call two mails that
# differ after the limit the same request (models/policy/rules/duplicates.py).
POLICY_TEXT_CHARS = 64 * 1024


def policy_view(message: InboundMessage) -> InboundMessage:
    """`message` as the rules read it: subject, new text and sender name cut to POLICY_TEXT_CHARS."""
    if max(len(message.new_text), len(message.subject), len(message.from_name)) <= POLICY_TEXT_CHARS:
        return message  # every real request: no copy
    return replace(message, new_text=message.new_text[:POLICY_TEXT_CHARS],
                   subject=message.subject[:POLICY_TEXT_CHARS], from_name=message.from_name[:POLICY_TEXT_CHARS])


class FindingCode(StrEnum):
    """Public contract: stored in Ticket.verdict and used by cards and templates."""

    UNIDENTIFIED = "unidentified"
    UNVERIFIED_SENDER = "unverified_sender"
    OUT_OF_SCOPE = "out_of_scope"
    PROFANITY = "profanity"
    DUPLICATE = "duplicate"
    MONTHLY_LIMIT = "monthly_limit"
    FAQ = "faq"
    PASSWORD_CHANGE = "password_change"
    UNCLEAR = "unclear"


@dataclass
class Finding:
    code: FindingCode
    clause: str  # clause of the regulations, e.g. "2.6"
    title_ru: str
    title_en: str
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable
    severity: Severity = "block"

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy of the evidence was a tenth of the ingest's CPU per mail.
        # The evidence is plain JSON data that nothing mutates once the finding is made.
        return {"code": str(self.code), "clause": self.clause, "title_ru": self.title_ru, "title_en": self.title_en,
                "evidence": dict(self.evidence), "severity": self.severity}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(code=FindingCode(data["code"]), clause=data["clause"], title_ru=data["title_ru"],
                   title_en=data["title_en"], evidence=dict(data.get("evidence") or {}),
                   severity=data.get("severity", "block"))


@dataclass
class ClientMatch:
    client_id: int
    name: str
    inn: str | None
    contract: str | None
    active: bool
    matched_by: str  # "address" | "domain" | "inn" | "contract"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientMatch:
        return cls(**data)


@dataclass
class Verdict:
    findings: list[Finding]
    client: ClientMatch | None
    candidates: list[ClientMatch]
    sender_verified: bool | None  # None: no trusted Authentication-Results
    month_count: int  # this request's position among the client's counted requests this month
    monthly_limit: int
    suggestion: Suggestion
    refuse_reason: str | None  # unidentified/out_of_scope/profanity/duplicate/monthly_limit/consulting
    duplicate_of: int | None = None
    faq_entries: list[dict[str, Any]] = field(default_factory=list)
    is_password_change: bool = False

    def has(self, code: FindingCode) -> bool:
        return any(f.code == code for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "findings": [f.to_json() for f in self.findings],
            "client": self.client.to_json() if self.client else None,
            "candidates": [c.to_json() for c in self.candidates],
            "sender_verified": self.sender_verified,
            "month_count": self.month_count,
            "monthly_limit": self.monthly_limit,
            "suggestion": self.suggestion,
            "refuse_reason": self.refuse_reason,
            "duplicate_of": self.duplicate_of,
            "faq_entries": [dict(e) for e in self.faq_entries],
            "is_password_change": self.is_password_change,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        client = data.get("client")
        return cls(
            findings=[Finding.from_json(f) for f in data.get("findings", [])],
            client=ClientMatch.from_json(client) if client else None,
            candidates=[ClientMatch.from_json(c) for c in data.get("candidates", [])],
            sender_verified=data.get("sender_verified"),
            month_count=int(data.get("month_count", 0)),
            monthly_limit=int(data.get("monthly_limit", 3)),
            suggestion=data.get("suggestion", "accept"),
            refuse_reason=data.get("refuse_reason"),
            duplicate_of=data.get("duplicate_of"),
            faq_entries=list(data.get("faq_entries", [])),
            is_password_change=bool(data.get("is_password_change", False)),
        )


@dataclass
class PolicyRequest:
    ticket_id: int | None  # None for a dry run (nothing stored yet)
    arrived_at: datetime  # aware; IMAP INTERNALDATE, never the sender's Date header
    message: InboundMessage
    # The rules' text analyses of `message` (`PolicyEngine.analyse`), when a parse worker already made
    # them; None: each rule analyses the text itself. Either way the verdict is the same.
    analyses: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PolicyConfig:
    monthly_limit: int = 3
    count_refused: bool = True  # do refused requests count toward the monthly limit (2.6)?
    duplicate_window_days: int = 30
    near_duplicate_ratio: float = 90.0  # rapidfuzz ratio, 0..100
    company_addresses: frozenset[str] = frozenset({"support@storeolis.ru"})
    trusted_authserv_ids: frozenset[str] = frozenset()  # empty: trust only the topmost header
    timezone: str = "Europe/Moscow"
    config_dir: Path | None = None  # operator overrides of the files in config/defaults/

    def data_file(self, name: str) -> Path:
        """The operator's copy of a data file when there is one, else the shipped default."""
        if self.config_dir is not None and (self.config_dir / name).is_file():
            return self.config_dir / name
        return DEFAULTS_DIR / name


T = TypeVar("T")


class PolicyData:
    """Data files (word lists, FAQ) loaded once per engine, keyed by their loader function."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self._cache: dict[Callable[[PolicyConfig], Any], Any] = {}

    def put(self, loader: Callable[[PolicyConfig], T], value: T) -> None:
        """Set what `loader` gives: for tools that run the rules with a part of their data replaced (the
        quality benchmark runs the out-of-scope rule without its trained model)."""
        self._cache[loader] = value

    def get(self, loader: Callable[[PolicyConfig], T]) -> T:
        if loader not in self._cache:
            self._cache[loader] = loader(self.config)
        return self._cache[loader]

    def preset(self, loader: Callable[[PolicyConfig], T], value: T) -> None:
        """Supply the value of `loader` directly (a test double, or data built elsewhere)."""
        self._cache[loader] = value


@dataclass
class PolicyContext:
    """What the rules share while one request goes down the chain. Identification runs first and
    fills `client`; later rules read it. The other fields feed the verdict."""

    config: PolicyConfig
    repository: PolicyRepository
    data: PolicyData
    client: ClientMatch | None = None
    candidates: list[ClientMatch] = field(default_factory=list)
    sender_verified: bool | None = None
    month_count: int = 0
    duplicate_of: int | None = None
    faq_entries: list[dict[str, Any]] = field(default_factory=list)
    is_password_change: bool = False


class Rule(ABC):
    """One clause of the regulations. `check` returns zero or more findings with evidence.

    A rule whose work on the text does not need the database puts that work in `analyse`: a pure
    function of the message and the data files, returning picklable values. The parse workers run it
    next to the parser (both cores, off the event loop) and `check` reads the result through
    `analysis()`; without a worker, `analysis()` runs it in place."""

    code: FindingCode
    clause: str
    title_ru: str
    title_en: str
    # Data loaders the rule needs; the engine calls them once at start-up so no file is read
    # while a request is being evaluated.
    loaders: tuple[Callable[[PolicyConfig], Any], ...] = ()
    # False: `analyse` gets the whole message and bounds its own work (only the duplicate rule does).
    bounded_text: bool = True

    def finding(self, evidence: dict[str, Any], severity: Severity = "block", **overrides: Any) -> Finding:
        return Finding(code=overrides.get("code", self.code), clause=overrides.get("clause", self.clause),
                       title_ru=overrides.get("title_ru", self.title_ru),
                       title_en=overrides.get("title_en", self.title_en), evidence=evidence,
                       severity=severity)

    @property
    def name(self) -> str:
        return type(self).__name__

    def analyse(self, message: InboundMessage, data: PolicyData) -> Any:
        """The rule's text work on `message` (None: the rule has none)."""
        return None

    def analysis(self, req: PolicyRequest, ctx: PolicyContext) -> Any:
        """The result of `analyse` for this request: made by a parse worker, else made now."""
        return self.analysis_with(req, ctx.data)

    def analysis_with(self, req: PolicyRequest, data: PolicyData) -> Any:
        if req.analyses is not None and self.name in req.analyses:
            return req.analyses[self.name]
        return self.analyse(self.view(req.message), data)

    def view(self, message: InboundMessage) -> InboundMessage:
        """What this rule's `analyse` reads of `message` (`policy_view` unless the rule bounds itself)."""
        return policy_view(message) if self.bounded_text else message

    @abstractmethod
    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]: ...
