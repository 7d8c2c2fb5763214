"""Summarise `pip-audit -f json` honestly for CI: an audit that audited nothing is not a pass.

pip-audit prints "No known vulnerabilities found" and exits 0 even when it skipped every package (no
network to PyPI, or a mirror that does not know them): that line read as a clean audit. Usage:
    pip-audit ... -f json > audit.json; python scripts/audit_summary.py audit.json
Always exits 0: the audit is advisory here (CI must not depend on the network); the text says what it was.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarise(raw: str) -> list[str]:
    try:
        dependencies = json.loads(raw)["dependencies"]
    except (ValueError, KeyError, TypeError):
        return ["dependency audit: NOT DONE - pip-audit gave no report (see its output above); nothing was audited"]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    if not audited:
        reason = skipped[0]["skip_reason"] if skipped else "no packages listed"
        return [
            f"dependency audit: NOT DONE - all {len(skipped)} packages were skipped, none was checked against "
            f"the advisory database (first reason: {reason}). This is not a pass."
        ]
    lines = [
        f"dependency audit: {d['name']} {d.get('version', '?')}: {v.get('id', '?')}"
        f" (fixed in {', '.join(v.get('fix_versions') or []) or 'no release yet'})"
        for d in audited
        for v in d.get("vulns") or []
    ]
    vulnerable = sum(1 for d in audited if d.get("vulns"))
    verdict = f"{len(lines)} known vulnerabilities in {vulnerable} packages" if lines else "no known vulnerabilities"
    tail = f"; {len(skipped)} skipped, NOT audited: {', '.join(d['name'] for d in skipped)}" if skipped else ""
    return [*lines, f"dependency audit: {verdict} in the {len(audited)} packages audited{tail}"]


def main(argv: list[str]) -> int:
    raw = Path(argv[1]).read_text(encoding="utf-8", errors="replace") if len(argv) > 1 else sys.stdin.read()
    print("\n".join(summarise(raw)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
