"""Check compose.yaml without a container engine (.ci/run): the services, their order and the stop time.

`docker compose config` needs the compose plugin (and values for the required variables); this reads
the file with PyYAML and checks what the deployment depends on: PostgreSQL 16 with a named volume and a
pg_isready healthcheck, a one-shot `migrate` after postgres is healthy, the bridge only after migrate
exited 0, restarts, settings from .env with DATABASE_URL on the postgres service, and a stop grace period
longer than the bridge's drain (read from the code, not copied). It also checks .env.example: compose
interpolates `$NAME` in env files, so a value holding `$` must be single-quoted there.
Usage: python scripts/check_compose.py [compose.yaml] [.env.example]; exit 1 with one line per problem.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def drain_seconds() -> float:
    """The longest a graceful stop takes by default: components' grace, then closing SMTP."""
    from bot.settings import Settings
    from bot.supervisor import Supervisor

    grace = inspect.signature(Supervisor.stop).parameters["grace"].default
    return float(grace) + float(Settings.model_fields["SMTP_TIMEOUT_SECONDS"].default)


def duration_seconds(value: object) -> float:
    """Compose durations: `90s`, `1m30s`, `2m`, or a bare number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r}")
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * unit[u] for n, u in parts)


def _condition(service: dict[str, Any], on: str) -> str | None:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):  # the short form has no condition: "started" only
        return "service_started" if on in depends else None
    entry = depends.get(on)
    return (entry or {}).get("condition", "service_started") if entry is not None else None


def _env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str | dict) else files
    return [f["path"] if isinstance(f, dict) else f for f in files]


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def check_compose(doc: dict[str, Any], drain: float) -> list[str]:
    problems: list[str] = []
    services = doc.get("services") or {}
    volumes = doc.get("volumes") or {}
    for name in ("postgres", "migrate", "bridge"):
        if name not in services:
            problems.append(f"services: no `{name}` service")
    if problems:
        return problems
    pg, migrate, bridge = services["postgres"], services["migrate"], services["bridge"]

    if not str(pg.get("image", "")).startswith("postgres:16"):
        problems.append(f"postgres: image {pg.get('image')!r} is not postgres:16")
    data_mounts = [str(v).split(":", 1) for v in pg.get("volumes") or []]
    if not any(len(m) == 2 and m[1].startswith("/var/lib/postgresql/data") and m[0] in volumes for m in data_mounts):
        problems.append("postgres: /var/lib/postgresql/data is not on a named volume declared under `volumes:`")
    if "pg_isready" not in str((pg.get("healthcheck") or {}).get("test", "")):
        problems.append("postgres: no pg_isready healthcheck (migrate waits for service_healthy)")
    if pg.get("restart") != "unless-stopped":
        problems.append("postgres: restart is not unless-stopped")

    if _command(migrate) != ["migrate"]:
        problems.append(f"migrate: command {_command(migrate)} is not ['migrate']")
    if _condition(migrate, "postgres") != "service_healthy":
        problems.append("migrate: does not wait for postgres to be healthy (depends_on condition service_healthy)")
    if migrate.get("restart", "no") not in ("no", False):
        problems.append("migrate: a one-shot service must not restart (restart: \"no\")")

    if _command(bridge) not in ([], ["run"]):
        problems.append(f"bridge: command {_command(bridge)} does not run the bridge")
    if _condition(bridge, "migrate") != "service_completed_successfully":
        problems.append("bridge: does not wait for migrate to exit 0 (condition service_completed_successfully)")
    if bridge.get("restart") != "unless-stopped":
        problems.append("bridge: restart is not unless-stopped")
    try:
        grace = duration_seconds(bridge.get("stop_grace_period", "10s"))
        if grace <= drain:
            problems.append(f"bridge: stop_grace_period {grace:g} s is not longer than the drain ({drain:g} s)")
    except ValueError as exc:
        problems.append(f"bridge: stop_grace_period: {exc}")
    if str(bridge.get("stop_signal", "SIGTERM")) != "SIGTERM":
        problems.append("bridge: stop_signal is not SIGTERM")

    for name, service in (("migrate", migrate), ("bridge", bridge)):
        if ".env" not in _env_files(service):
            problems.append(f"{name}: settings do not come from .env (env_file)")
        url = str((service.get("environment") or {}).get("DATABASE_URL", ""))
        if not re.match(r"postgres(ql)?://[^@]+@postgres:5432/", url):
            problems.append(f"{name}: DATABASE_URL does not point at the postgres service")
        if "BASE_IMAGE" not in ((service.get("build") or {}).get("args") or {}):
            problems.append(f"{name}: the build does not pass BASE_IMAGE (the Dockerfile's base image argument)")
    if migrate.get("image") != bridge.get("image"):
        problems.append("migrate and bridge do not run the same image")
    return problems


def check_env_example(text: str) -> list[str]:
    """Compose interpolates `$NAME` in env_file values unless they are single-quoted."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if "$" in value and not (value.startswith("'") and value.endswith("'")):
            problems.append(f".env.example:{number}: {name.strip()}: a value with `$` must be single-quoted "
                            f"(compose would replace ${value.split('$', 1)[1]} with a variable)")
    return problems


def main(argv: list[str]) -> int:
    compose = Path(argv[0]) if argv else ROOT / "compose.yaml"
    env_example = Path(argv[1]) if len(argv) > 1 else ROOT / ".env.example"
    try:
        doc = yaml.safe_load(compose.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        print(f"{compose}: {exc}")
        return 1
    drain = drain_seconds()
    problems = check_compose(doc if isinstance(doc, dict) else {}, drain)
    problems += check_env_example(env_example.read_text(encoding="utf-8"))
    for line in problems:
        print(f"{compose.name}: {line}")
    if problems:
        return 1
    grace = duration_seconds(doc["services"]["bridge"].get("stop_grace_period"))
    print(f"{compose.name} OK: postgres (healthy) -> migrate (exit 0) -> bridge; "
          f"stop grace {grace:g} s > drain {drain:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
