"""Each compat module (what we take from a library's internals) fails here, loudly, when the library
changes underneath it: the installed version must be the pinned one (pyproject.toml pins it exactly),
and each attribute relied on must still have the source it was written against."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bot.runtime import compat_pydantic
from mail import compat_aioimaplib
from models.store import compat_aiosqlite, compat_tortoise

COMPAT = [compat_pydantic, compat_aioimaplib, compat_tortoise, compat_aiosqlite]
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def resolve(path: str) -> Any:
    """`package.module.Class.attr` -> the attribute (a property's getter), found statically."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            obj = inspect.getattr_static(obj, name)
        break
    if isinstance(obj, property):
        return obj.fget
    if isinstance(obj, classmethod | staticmethod):
        return obj.__func__
    return obj


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


@pytest.mark.parametrize("module", COMPAT, ids=lambda m: m.LIBRARY)
def test_the_installed_library_is_the_pinned_version(module: ModuleType) -> None:
    assert version(module.LIBRARY) == module.PINNED, (
        f"{module.__name__} was written against {module.LIBRARY}=={module.PINNED}: re-check every patch in it "
        "against the new version, then update PINNED, FINGERPRINTS and pyproject.toml"
    )


@pytest.mark.parametrize("module", COMPAT, ids=lambda m: m.LIBRARY)
def test_pyproject_pins_the_library_exactly(module: ModuleType) -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pattern = re.compile(rf"^{re.escape(module.LIBRARY)}(\[[^\]]*\])?=={re.escape(module.PINNED)}$")
    assert any(pattern.match(d) for d in dependencies), dependencies


@pytest.mark.parametrize("module", COMPAT, ids=lambda m: m.LIBRARY)
def test_each_attribute_relied_on_is_unchanged(module: ModuleType) -> None:
    assert module.FINGERPRINTS
    replaced = module.replaced() if hasattr(module, "replaced") else {}  # patched in place: the original
    changed = {path: fingerprint(replaced.get(path) or resolve(path)) for path in module.FINGERPRINTS}
    changed = {path: now for path, now in changed.items() if now != module.FINGERPRINTS[path]}
    assert not changed, f"{module.LIBRARY} changed under {module.__name__}: {changed}"


def test_the_pydantic_patch_is_active_and_its_original_kept() -> None:
    assert compat_pydantic.install() is True
    assert set(compat_pydantic.replaced()) == set(compat_pydantic.FINGERPRINTS)


def test_a_changed_source_is_noticed() -> None:
    """The check itself can fail: a fingerprint of another function differs."""
    assert fingerprint(resolve("pydantic.main.BaseModel.model_validate")) != (
        compat_pydantic.FINGERPRINTS["pydantic.main.BaseModel.model_rebuild"]
    )
