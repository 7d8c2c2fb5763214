"""Authentication-Results (RFC 8601): parse the header and judge whether the From domain is genuine.

Anyone can add an Authentication-Results header to a message before it reaches us, so only headers
added by our own receiving servers count: those whose authserv-id is listed in
`trusted_authserv_ids`, or, when that list is empty, only the topmost header (the one our server
added last). A forged header lower down is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from models.text_scan import RunScan

# "=" with the blanks around it. A match may begin only at the start of a blank run (or at the "=" itself):
# `\s*=` tried from every blank of a long run without "=" is quadratic (the contract of
# models/text_scan.RunScan: a start refused here has a match one character earlier).
_EQUALS = RunScan(r"\s*=\s*", r"(?<!\s)\s*=\s*|=\s*")


@dataclass(frozen=True, slots=True)
class MethodResult:
    method: str  # "dkim", "spf", "dmarc", ...
    result: str  # "pass", "fail", "softfail", "none", ...
    properties: dict[str, str] = field(default_factory=dict)  # {"header.d": "example.ru", ...}
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AuthResults:
    authserv_id: str
    results: tuple[MethodResult, ...]
    index: int  # position among the message's headers, 0 = topmost (newest)
    version: str | None = None


@dataclass(frozen=True, slots=True)
class SenderAuth:
    """verified: True = the domain authenticated; False = it failed (treat the From as forged);
    None = no trusted header, or nothing conclusive in it."""

    verified: bool | None
    reason: str
    authserv_id: str | None = None
    results: dict[str, str] = field(default_factory=dict)  # {"dkim": "pass", "spf": "fail", ...}

    def evidence(self) -> dict:
        return {"verified": self.verified, "reason": self.reason, "authserv_id": self.authserv_id,
                "results": dict(self.results)}


def _strip_comments(value: str) -> str:
    """Remove RFC 5322 comments "(...)" (they nest), leaving quoted strings alone."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            if ch == '"':
                quoted = False
            out.append(ch)
        elif ch == '"' and depth == 0:
            quoted = True
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _split_outside_quotes(value: str, sep: str | None) -> list[str]:
    """Split on `sep` (None = whitespace) except inside double quotes."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif not quoted and (ch == sep or (sep is None and ch.isspace())):
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def parse_authentication_results(value: str, index: int = 0) -> AuthResults | None:
    """Parse one header value; None when it has no authserv-id at all."""
    parts = _split_outside_quotes(_strip_comments(value), ";")
    if not parts:
        return None
    head = parts[0].split()
    authserv_id = head[0].casefold()
    version = head[1] if len(head) > 1 and head[1].isdigit() else None
    results: list[MethodResult] = []
    for spec in parts[1:]:
        # Some servers write "spf = pass": glue "=" to its neighbours before splitting on blanks.
        words = _split_outside_quotes(_EQUALS.sub("=", spec), None)
        if not words or "=" not in words[0]:
            continue  # "none" (no authentication done) or garbage
        method, _, result = words[0].partition("=")
        method = method.split("/", 1)[0].casefold()
        props: dict[str, str] = {}
        reason: str | None = None
        for word in words[1:]:
            key, eq, val = word.partition("=")
            if not eq:
                continue
            key = key.casefold()
            if key == "reason":
                reason = _unquote(val)
            else:
                props[key] = _unquote(val).casefold() if "." in key else _unquote(val)
        results.append(MethodResult(method, result.casefold(), props, reason))
    return AuthResults(authserv_id, tuple(results), index, version)


def trusted_results(headers: Iterable[str], trusted_ids: frozenset[str]) -> list[AuthResults]:
    """The headers we may believe. `headers` are topmost (newest) first, as `InboundMessage` keeps them."""
    parsed = [p for i, h in enumerate(headers) if (p := parse_authentication_results(h, i)) is not None]
    if trusted_ids:
        wanted = {t.casefold() for t in trusted_ids}
        return [p for p in parsed if p.authserv_id in wanted]
    return [p for p in parsed if p.index == 0]


def _domain_of(value: str) -> str:
    return value.rsplit("@", 1)[-1].casefold().strip(" <>")


def _aligned(domain: str, other: str | None) -> bool:
    """Relaxed alignment (DMARC): same organisational domain, one a subdomain of the other."""
    if not other:
        return True  # the property was not reported: do not hold that against the sender
    other = _domain_of(other)
    return domain == other or domain.endswith("." + other) or other.endswith("." + domain)


def assess_sender(headers: Iterable[str], from_address: str, trusted_ids: frozenset[str]) -> SenderAuth:
    """Is the From domain authenticated by our own server?

    Not verified when DMARC fails for it, or when SPF fails and no aligned DKIM signature passes.
    Verified when DMARC passes or an aligned SPF or DKIM passes.
    """
    domain = _domain_of(from_address) if "@" in from_address else ""
    trusted = trusted_results(headers, trusted_ids)
    if not trusted or not domain:
        return SenderAuth(None, "no trusted Authentication-Results")
    header = trusted[0]
    summary: dict[str, str] = {}
    dmarc = spf = dkim = None
    for r in header.results:
        if r.method == "dmarc" and _aligned(domain, r.properties.get("header.from")):
            dmarc = dmarc if dmarc == "pass" else r.result
        elif r.method == "spf" and _aligned(domain, r.properties.get("smtp.mailfrom")):
            spf = spf if spf == "pass" else r.result
        elif r.method == "dkim" and _aligned(domain, r.properties.get("header.d")):
            dkim = dkim if dkim == "pass" else r.result  # any passing aligned signature is enough
        summary.setdefault(r.method, r.result)
    for name, value in (("dmarc", dmarc), ("spf", spf), ("dkim", dkim)):
        if value is not None:
            summary[name] = value
    sid = header.authserv_id
    if dmarc == "fail":
        return SenderAuth(False, f"dmarc=fail for {domain}", sid, summary)
    if spf in ("fail", "softfail") and dkim != "pass":
        return SenderAuth(False, f"spf={spf} and no passing dkim for {domain}", sid, summary)
    if "pass" in (dmarc, spf, dkim):
        return SenderAuth(True, f"authenticated ({', '.join(f'{k}={v}' for k, v in summary.items())})",
                          sid, summary)
    return SenderAuth(None, "no conclusive result", sid, summary)
