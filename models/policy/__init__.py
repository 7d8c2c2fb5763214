"""The support regulations as a policy chain (after GNU Mailman's rules and builtin chain).

`RULES` runs in order, each rule citing its clause and recording findings with evidence; identification
runs first because later rules need the client. `SUGGESTIONS` then maps the findings to one
suggestion for staff, first matching row wins. The engine suggests; people decide.
Adding a rule: one class in `rules/` and one line in `RULES` (and a row in `SUGGESTIONS` if it can
refuse).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from models.inbound import InboundMessage
from models.policy.base import (
    ClientMatch,
    Finding,
    FindingCode,
    PolicyConfig,
    PolicyContext,
    PolicyData,
    PolicyRequest,
    Rule,
    Severity,
    Suggestion,
    Verdict,
    policy_view,
)
from models.policy.records import PolicyRepository
from models.policy.request_lookups import prefetch
from models.policy.rules.duplicates import DuplicateRule, content_hash
from models.policy.rules.faq import FaqRule
from models.policy.rules.identification import IdentificationRule
from models.policy.rules.monthly_limit import MonthlyLimitRule, month_key
from models.policy.rules.out_of_scope import OutOfScopeRule
from models.policy.rules.password_change import PasswordChangeRule
from models.policy.rules.profanity import ProfanityRule
from models.policy.rules.unclear import UnclearRule

RULES: tuple[type[Rule], ...] = (
    IdentificationRule,  # 2.1, 2.6 — first: the others read ctx.client
    DuplicateRule,  # 2.6
    ProfanityRule,  # 2.6
    OutOfScopeRule,  # 2.4, 2.6
    MonthlyLimitRule,  # 2.6
    FaqRule,  # 2.5
    PasswordChangeRule,  # 1.1
    UnclearRule,  # 2.1-2.2
)


@dataclass(frozen=True)
class Link:
    """One row of the suggestion chain: a finding of `code` at `severity` (and, when given, with
    evidence["category"] == `category`) leads to `suggestion` with `reason`."""

    code: FindingCode
    severity: Severity
    suggestion: Suggestion
    reason: str | None
    category: str | None = None


SUGGESTIONS: tuple[Link, ...] = (
    #    finding                    severity  suggestion    refuse reason     category
    Link(FindingCode.DUPLICATE, "block", "refuse", "duplicate"),
    Link(FindingCode.PROFANITY, "block", "refuse", "profanity"),
    Link(FindingCode.UNIDENTIFIED, "block", "refuse", "unidentified"),
    Link(FindingCode.OUT_OF_SCOPE, "block", "refuse", "consulting", "consulting"),
    Link(FindingCode.OUT_OF_SCOPE, "block", "refuse", "out_of_scope"),
    Link(FindingCode.MONTHLY_LIMIT, "block", "refuse", "monthly_limit"),
    Link(FindingCode.FAQ, "info", "answer_faq", None),
)  # nothing matched: "accept"


def suggest(findings: list[Finding]) -> tuple[Suggestion, str | None]:
    for link in SUGGESTIONS:
        for f in findings:
            if f.code == link.code and f.severity == link.severity and (
                    link.category is None or f.evidence.get("category") == link.category):
                return link.suggestion, link.reason
    return "accept", None


async def _read_ahead(ctx: PolicyContext, req: PolicyRequest, given: PolicyRepository | None) -> None:
    """The client is known: what the later rules read, in one statement. A group's lookups (`given`) have
    read it for the whole group already."""
    if given is None:
        ctx.repository = await prefetch(ctx.repository, req, ctx)


class PolicyEngine:
    """Runs the chain. Data files are loaded once here, not per request."""

    def __init__(self, config: PolicyConfig, repository: PolicyRepository,
                 rules: tuple[type[Rule], ...] = RULES, data: PolicyData | None = None) -> None:
        self.config = config
        self.repository = repository
        self.rules = [rule() for rule in rules]
        # `data` may be shared between engines or preset with test doubles; loaders already run are kept.
        self.data = data or PolicyData(config)
        for rule in self.rules:
            for loader in rule.loaders:
                self.data.get(loader)

    def analyse(self, message: InboundMessage, skip: Rule | None = None) -> dict[str, Any]:
        """Every rule's text analysis of `message` (but `skip`'s), by rule name: what `evaluate` would
        otherwise do on the event loop. Pure and picklable, so a parse worker can run it (`TextAnalyser`)."""
        analyses: dict[str, Any] = {}
        view = policy_view(message)  # made once: every rule but the duplicate check reads the bounded text
        for rule in self.rules:
            if rule is skip:
                continue
            result = rule.analyse(view if rule.bounded_text else message, self.data)
            if result is not None:
                analyses[rule.name] = result
        return analyses

    async def evaluate(self, req: PolicyRequest, repository: PolicyRepository | None = None) -> Verdict:
        """The verdict on `req`; its lookups go to `repository` when given (an ingest group's
        GroupLookups), else to the engine's own."""
        if req.arrived_at.tzinfo is None:
            raise ValueError("PolicyRequest.arrived_at must be timezone-aware")
        ctx = PolicyContext(config=self.config, repository=repository or self.repository, data=self.data)
        findings: list[Finding] = []
        rules = self.rules
        if (req.analyses is None and rules and isinstance(rules[0], IdentificationRule)
                and getattr(ctx.repository, "answers_over_network", False)):
            # Nobody made the text work beforehand (a request evaluated alone: a re-evaluation, `explain`)
            # and the database is a server: identification's statement goes out first and the other
            # rules' analyses are made while the server answers, instead of one after the other. The
            # verdict is the same (the analyses are pure; tests/policy/test_engine_overlap.py).
            identified = asyncio.ensure_future(rules[0].check(req, ctx))
            try:
                await asyncio.sleep(0)  # the task runs until it waits for the database's answer
                req = replace(req, analyses=self.analyse(req.message, skip=rules[0]))
                findings += await identified
            finally:
                identified.cancel()  # a no-op once done; else (the analysis failed) no task outlives us
            await _read_ahead(ctx, req, repository)
            rules = rules[1:]
        for rule in rules:
            findings += await rule.check(req, ctx)
            if isinstance(rule, IdentificationRule):
                await _read_ahead(ctx, req, repository)
        suggestion, reason = suggest(findings)
        return Verdict(
            findings=findings, client=ctx.client, candidates=ctx.candidates,
            sender_verified=ctx.sender_verified, month_count=ctx.month_count,
            monthly_limit=self.config.monthly_limit, suggestion=suggestion, refuse_reason=reason,
            duplicate_of=ctx.duplicate_of, faq_entries=ctx.faq_entries,
            is_password_change=ctx.is_password_change,
        )


__all__ = [
    "RULES", "SUGGESTIONS", "ClientMatch", "Finding", "FindingCode", "Link", "PolicyConfig", "PolicyContext",
    "PolicyData", "PolicyEngine", "PolicyRepository", "PolicyRequest", "Rule", "TortoisePolicyRepository", "Verdict",
    "content_hash", "month_key", "suggest",
]


def __getattr__(name: str) -> object:
    # The tortoise implementation is imported on first use: the parse workers, which run the rules'
    # text work only, never import tortoise and the ORM models (models/policy/records.py).
    if name == "TortoisePolicyRepository":
        from models.policy.repository import TortoisePolicyRepository

        return TortoisePolicyRepository
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
