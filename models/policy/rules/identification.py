"""2.1, 2.6: identify the client (first in the chain; later rules read `ctx.client`).

Evidence, strongest first: the sender's registered address, else its registered "@domain"; an INN
(valid checksum) or a contract number written in the subject or the new text.

- The address counts only when the sender is not proven forged: if our own server's
  Authentication-Results say DMARC failed, or SPF failed with no passing DKIM, the address alone
  identifies nobody (`unverified_sender`, warn), and whatever matched is listed as candidates.
- Ambiguity is never guessed: one domain registered to two clients, or an address of one client and
  an INN/contract of another, gives `unidentified` with the candidates. An INN/contract that picks
  exactly one of the clients sharing the domain does resolve it (both pieces of evidence agree).
- An INN/contract from an unregistered address identifies the client (matched_by "inn"/"contract");
  the password rule still treats such a sender as unconfirmed.
- Inactive client: identified (`client.active` is False), plus a warn-level `out_of_scope` finding
  citing 2.6: the services are not under a current contract. Warn rather than block, because
  staff may know that a renewal is under way; it shows on the card without forcing a refusal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from models.policy.authresults import assess_sender
from models.policy.base import (
    ClientMatch,
    Finding,
    FindingCode,
    PolicyContext,
    PolicyData,
    PolicyRequest,
    Rule,
)
from models.policy.inn import InnMatch, find_inns
from models.policy.records import AddressRow, ClientRow, Identities

if TYPE_CHECKING:
    from models.inbound import InboundMessage

# Contract-number candidates: an optional short letter prefix, then digits with / - . separators,
# e.g. "Д-2024/117", "SO-17/2", "12345" after "№". Looked up as written (and upper-cased) in the DB.
_CONTRACT = re.compile(r"(?<![\w/])(?:[A-Za-zА-Яа-яЁё]{1,4}[-‐–]?)?\d[\d/\-.‐–]*\d(?![\w/])")
_MAX_TOKENS = 40


_DIGIT = re.compile(r"\d")
_MAX_PREFIX = 5  # a candidate's first digit is at most this far from its start: 4 letters and a dash


def _contract_matches(text: str) -> Iterator[re.Match[str]]:
    """Exactly `_CONTRACT.finditer(text)`, about five times faster on mail text.

    Why: finditer tries the pattern (a lookbehind, then up to four letters) at every position of the
    text, while a candidate can only start within `_MAX_PREFIX` characters before a digit. So from
    each digit the few starting positions before it are tried with `match`, leftmost first (a
    lookbehind sees the text before `pos`); the text between digits is skipped by a C search.
    Any match starting at or after `pos` has the first digit at or after `pos` as its first digit,
    which is why failing there means the next start is past that digit. tests/policy/test_identification
    compares the two on random texts."""
    pos = 0
    while (digit := _DIGIT.search(text, pos)) is not None:
        first = digit.start()
        for start in range(max(pos, first - _MAX_PREFIX), first + 1):
            if (found := _CONTRACT.match(text, start)) is not None:
                yield found
                pos = found.end()
                break
        else:
            pos = first + 1


def contract_candidates(text: str) -> list[str]:
    """Tokens that may be contract numbers, as written and upper-cased, without duplicates."""
    seen: dict[str, None] = {}
    for m in _contract_matches(text):
        token = m.group().strip().strip(".").replace("‐", "-").replace("–", "-")
        for variant in (token, token.upper()):
            seen.setdefault(variant)
        if len(seen) >= _MAX_TOKENS:
            break
    return list(seen)


def _domains(address: str) -> list[str]:
    """"@mail.client.ru" then "@client.ru": a registered parent domain covers its subdomains."""
    if "@" not in address:
        return []
    labels = address.rsplit("@", 1)[1].split(".")
    return ["@" + ".".join(labels[i:]) for i in range(len(labels) - 1)]


def _match(row: ClientRow, by: str) -> ClientMatch:
    return ClientMatch(client_id=row.id, name=row.name, inn=row.inn, contract=row.contract,
                       active=row.active, matched_by=by)


def identity_keys(req: PolicyRequest, data: PolicyData) -> tuple[list[str], list[str], list[str]]:
    """What `IdentificationRule.check` looks up for `req`: addresses (the sender's and its domains),
    INNs and contract numbers. An ingest group reads them for all its requests at once."""
    rule = IdentificationRule()
    inns, contracts = rule.analysis_with(req, data)
    address = req.message.from_address
    return ([address, *_domains(address)] if address else []), [i.inn for i in inns], list(contracts)


class IdentificationRule(Rule):
    code = FindingCode.UNIDENTIFIED
    clause = "2.6"
    title_ru = "Невозможно идентифицировать клиента"
    title_en = "The client cannot be identified"

    def analyse(self, message: InboundMessage, data: PolicyData) -> tuple[list[InnMatch], list[str]]:
        """The INNs (valid checksum) and the contract-number candidates written in the mail."""
        text = f"{message.subject}\n{message.new_text}"
        return find_inns(text), contract_candidates(text)

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        msg = req.message
        findings: list[Finding] = []
        auth = assess_sender(msg.authentication_results, msg.from_address, ctx.config.trusted_authserv_ids)
        ctx.sender_verified = auth.verified

        # Every lookup (address, its domains, INNs, contract numbers) in one round trip.
        inns, contracts = self.analysis(req, ctx)
        domains = _domains(msg.from_address)
        addresses = [msg.from_address, *domains] if msg.from_address else []
        found = await ctx.repository.identify(addresses, [i.inn for i in inns], contracts)
        by_address = self._by_address(msg.from_address, domains, found.addresses)
        by_document, doc_evidence = self._by_documents(inns, found)

        if auth.verified is False:
            findings.append(self.finding(
                {"auth": auth.evidence(), "from": msg.from_address,
                 "address_matches": [m.client_id for m in by_address]},
                "warn", code=FindingCode.UNVERIFIED_SENDER, clause="2.1",
                title_ru="Отправитель не подтверждён (SPF/DKIM/DMARC)",
                title_en="Sender not verified (SPF/DKIM/DMARC)"))
            ctx.candidates = _unique(by_address + by_document)
            findings.append(self.finding({"reason": "sender_not_verified", "from": msg.from_address,
                                          **doc_evidence, "candidates": _ids(ctx.candidates)}))
            return findings

        client, reason = self._decide(by_address, by_document)
        if client is None:
            ctx.candidates = _unique(by_address + by_document)
            findings.append(self.finding({"reason": reason, "from": msg.from_address, **doc_evidence,
                                          "candidates": _ids(ctx.candidates)}))
            return findings

        ctx.client = client
        if not client.active:
            findings.append(self.finding(
                {"reason": "inactive", "client_id": client.client_id, "matched_by": client.matched_by},
                "warn", code=FindingCode.OUT_OF_SCOPE, clause="2.6",
                title_ru="Клиент неактивен: услуги не оказываются по действующему договору",
                title_en="Client inactive: services are not under a current contract"))
        return findings

    @staticmethod
    def _by_address(address: str, domains: list[str], rows: list[AddressRow]) -> list[ClientMatch]:
        exact = [_match(r.client, "address") for r in rows if not r.is_domain and r.value == address]
        if exact:
            return _unique(exact)
        # The most specific registered domain wins: "@mail.client.ru" before "@client.ru".
        for domain in domains:
            hits = [_match(r.client, "domain") for r in rows if r.is_domain and r.value == domain]
            if hits:
                return _unique(hits)
        return []

    @staticmethod
    def _by_documents(inns: list[InnMatch], found: Identities) -> tuple[list[ClientMatch], dict]:
        matches = [_match(r, "inn") for r in found.by_inn]
        matches += [_match(r, "contract") for r in found.by_contract]
        evidence: dict = {}
        if inns:
            evidence["inns"] = [{"inn": i.inn, "start": i.start, "end": i.end} for i in inns]
        if found.by_contract:
            evidence["contracts"] = sorted({r.contract or "" for r in found.by_contract})
        return _unique(matches), evidence

    @staticmethod
    def _decide(by_address: list[ClientMatch], by_document: list[ClientMatch]) -> tuple[ClientMatch | None, str]:
        addr_ids = {m.client_id for m in by_address}
        doc_ids = {m.client_id for m in by_document}
        if len(addr_ids) == 1:
            if doc_ids - addr_ids:
                return None, "address_and_document_disagree"
            return by_address[0], ""
        if len(addr_ids) > 1:
            agreed = addr_ids & doc_ids
            if len(agreed) == 1 and doc_ids == agreed:
                return next(m for m in by_document if m.client_id in agreed), ""
            return None, "ambiguous_domain"
        if len(doc_ids) == 1:
            return by_document[0], ""
        if len(doc_ids) > 1:
            return None, "ambiguous_documents"
        return None, "not_registered"


def _unique(matches: list[ClientMatch]) -> list[ClientMatch]:
    seen: dict[int, ClientMatch] = {}
    for m in matches:
        seen.setdefault(m.client_id, m)
    return list(seen.values())


def _ids(matches: list[ClientMatch]) -> list[dict]:
    return [{"client_id": m.client_id, "name": m.name, "matched_by": m.matched_by} for m in matches]
