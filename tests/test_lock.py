"""requirements.lock is the environment CI and scripts/install.sh install (issue 21): every package pinned
exactly with its hashes (pip installs it with --require-hashes), and every dependency pyproject.toml
declares present at a version its range accepts. A dependency added to pyproject.toml without
regenerating the lock (README, "Development") fails here, not on an operator's machine."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pin_blocks(name: str) -> Iterator[re.Match[str]]:
    text = (ROOT / name).read_text(encoding="utf-8")
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.\-]+)(?:\[([^\]]*)\])?==(\S+)", block)
        if match:
            yield match


def locked(name: str = "requirements.lock") -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    for match in _pin_blocks(name):
        block = match.string
        pins[canonicalize_name(match.group(1))] = (match.group(3), block.count("--hash=sha256:"))
    return pins


def locked_extras(name: str = "requirements.lock") -> dict[str, set[str]]:
    """name -> the extras its pin carries ("cachecontrol[filecache]==0.14.4")."""
    return {canonicalize_name(m.group(1)): {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}
            for m in _pin_blocks(name)}


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-runtime.lock"])
def test_every_extra_a_locked_package_asks_for_is_pinned_with_it(lock: str) -> None:
    """A dependency asked for with an extra ("CacheControl[filecache]>=0.13.0" from pip-audit) is, for
    `pip install --require-hashes`, a requirement of its own: unless the lock pins it with that extra, pip
    looks for it on the index and refuses the newer release it finds there ("all requirements must have
    their versions pinned with =="). That is how CI failed on 2026-12-07 once PyPI was reachable."""
    pins, extras = locked(lock), locked_extras(lock)
    environment = dict(default_environment(), extra="")
    problems = []
    for dist in metadata.distributions():
        if canonicalize_name(dist.metadata["Name"]) not in pins:
            continue
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            wanted = canonicalize_name(requirement.name)
            if requirement.extras and wanted in pins and not requirement.extras <= extras[wanted]:
                problems.append(f"{dist.metadata['Name']} asks for {text}: pin {wanted}[...] with its extras")
    assert not problems, problems


def test_every_locked_package_is_pinned_with_hashes() -> None:
    pins = locked()
    assert len(pins) > 30
    assert {name for name, (_, hashes) in pins.items() if hashes == 0} == set()
    assert "pip" in pins  # --allow-unsafe: pip itself comes from the lock too


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    pins = locked()
    problems = []
    for line in declared:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{name}: not in requirements.lock")
        elif not requirement.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{name}: locked {pins[name][0]}, pyproject.toml asks {requirement.specifier}")
    assert problems == []


def test_the_runtime_lock_of_the_image_agrees_with_the_whole_lock() -> None:
    """requirements-runtime.lock (the container image: the project without its test tools) pins every
    runtime dependency, with hashes, at the same version as requirements.lock."""
    runtime, whole = locked("requirements-runtime.lock"), locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert {canonicalize_name(Requirement(line).name) for line in project["dependencies"]} <= set(runtime)
    assert {name for name, (_, hashes) in runtime.items() if hashes == 0} == set()
    assert {name: version for name, (version, _) in runtime.items() if whole.get(name, ("",))[0] != version} == {}
