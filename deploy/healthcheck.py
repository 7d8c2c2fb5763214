"""The container's HEALTHCHECK: exit 0 when GET /health answers 200, 1 otherwise (Dockerfile).

The endpoint (bot/health.py) listens only when HEALTH_PORT is set; without it there is nothing to ask
and the check passes, so an image run without HEALTH_PORT is not reported unhealthy forever. Standard
library only: the image needs no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("HEALTH_PORT", "").strip()
    if not port:
        return 0
    host = os.environ.get("HEALTH_HOST", "").strip() or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: ask the loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=12) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503: a component is down or failing (the body says which)
        print(f"{url}: HTTP {exc.code}: {exc.read(300).decode('utf-8', 'replace')}")
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
