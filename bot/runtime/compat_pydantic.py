"""Compat patch of pydantic (pinned: pydantic==2.13.5): aiogram's schemas built on first use, not all ~400 at import.

Replaces: `pydantic.BaseModel.model_rebuild` (a classmethod, for the whole process; it passes through
for every model that is not aiogram's). Buys: idle RSS 228 -> 126 MB and the first mail stored 4.0 -> 1.5 s
after start (docs/benchmarks.md, "Changes made (2026-12-05)"). Checked by tests/test_compat.py (the
installed version and the source of the replaced method) and tests/test_lazy_types.py (behaviour).
Formerly bot/lazy_types.py.

Why: `aiogram/types/__init__.py` ends by calling `model_rebuild()` on every Bot API type, which makes
pydantic build a validator and a serializer for each one, eagerly, each with the schemas of the types it
nests. That is about 150 MB of RSS and 1.5-2.5 s of start-up on this project's machines, for a bridge
that only ever validates `Update` (and what it nests) and serializes a dozen methods. The types already
declare `defer_build=True`; only that explicit loop defeats it.

`install()` (called from `bot/__init__.py`, before anything imports aiogram) wraps
`BaseModel.model_rebuild`: while aiogram's own loop passes its complete types namespace, the namespace is
remembered and the build skipped; when pydantic later builds a deferred aiogram model on its first
validation or serialization, the remembered namespace is passed back so every forward reference
(`"Message"`, `"User"`, ...) resolves exactly as it would have at import. Models outside aiogram are
untouched. If pydantic's `model_rebuild` ever changes its signature, `install()` does nothing and aiogram
builds eagerly as before (slower, never wrong).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

LIBRARY = "pydantic"
PINNED = "2.13.5"
# What this module relies on, as tests/test_compat.py fingerprints it: the first 16 hex digits of the
# SHA-256 of `inspect.getsource` of each patched attribute.
FINGERPRINTS = {"pydantic.main.BaseModel.model_rebuild": "d04f899f06a8a185"}

_AIOGRAM = "aiogram."
_EXPECTED = {"force", "raise_errors", "_parent_namespace_depth", "_types_namespace"}
_namespaces: dict[type, Any] = {}
_installed = False
_replaced: dict[str, Any] = {}  # what install() replaced, by the FINGERPRINTS name


def install() -> bool:
    """Make aiogram's type schemas lazy; True when active. Call before the first `import aiogram`."""
    global _installed
    if _installed:
        return True
    if "aiogram.types" in sys.modules:  # too late: the eager loop already ran
        return False
    from pydantic import BaseModel

    original = BaseModel.model_rebuild.__func__  # type: ignore[attr-defined]
    if not _EXPECTED <= set(inspect.signature(original).parameters):
        return False

    def model_rebuild(
        cls: type[BaseModel],
        *,
        force: bool = False,
        raise_errors: bool = True,
        _parent_namespace_depth: int = 2,
        _types_namespace: Any = None,
    ) -> bool | None:
        if _is_aiogram(cls):
            if (
                _types_namespace is not None
                and not force
                and cls.model_config.get("defer_build")
                and not cls.__pydantic_complete__
            ):
                _namespaces[cls] = _types_namespace  # aiogram's import-time loop: defer the build
                return None
            if _types_namespace is None and _namespaces:
                # A deferred build on first use. Methods (aiogram.methods) were never in the loop: they
                # resolve against the same namespace of every Bot API type.
                _types_namespace = _namespaces.get(cls) or next(iter(_namespaces.values()))
        return original(  # type: ignore[no-any-return]
            cls,
            force=force,
            raise_errors=raise_errors,
            _parent_namespace_depth=_parent_namespace_depth,
            _types_namespace=_types_namespace,
        )

    _replaced["pydantic.main.BaseModel.model_rebuild"] = original
    BaseModel.model_rebuild = classmethod(model_rebuild)  # type: ignore[assignment,method-assign]
    _installed = True
    return True


def _is_aiogram(cls: type) -> bool:
    """An aiogram model, or one of ours derived from one (bot/telegram_outbox.py's methods with a lighter
    answer): they resolve their names against aiogram's namespace too."""
    return any(c.__module__.startswith(_AIOGRAM) for c in cls.__mro__)


def replaced() -> dict[str, Any]:
    """The library's own functions install() replaced (for tests/test_compat.py's fingerprints)."""
    return dict(_replaced)


def deferred_count() -> int:
    """How many aiogram types had their build deferred (0 when not installed); for `status` and tests."""
    return len(_namespaces)
