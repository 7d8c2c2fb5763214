"""Keep the objects made at start-up out of the garbage collector's full passes.

After start-up the bridge holds a few hundred thousand long-lived objects (aiogram's and tortoise's
classes, the policy's data, the templates); each full collection walks all of them again, and under a
backlog the bridge made seven of those for 0.6 s of CPU on its event-loop thread (a parse worker
~0.15 s). `gc.freeze()` moves everything alive now into a permanent generation that collections skip;
what is allocated afterwards is collected as before. The price: a start-up object that later ends up
in a reference cycle is never freed, and such objects are few and made once.

Start-up itself (imports: classes, schemas, regexes) triggers a dozen full collections of a growing
heap that frees next to nothing, so `pause_collection` turns the collector off until the freeze.
"""

from __future__ import annotations

import gc


def pause_collection() -> None:
    """No automatic collections until `freeze_startup_objects` (start-up makes little garbage)."""
    gc.disable()


def freeze_startup_objects() -> int:
    """Collect once, freeze what is left and turn automatic collection (back) on; returns how many
    objects were frozen."""
    gc.collect()
    gc.freeze()
    gc.enable()
    return gc.get_freeze_count()
