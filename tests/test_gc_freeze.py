"""bot/gc_freeze.py: start-up objects are frozen and the collector is back on afterwards."""

from __future__ import annotations

import gc

from bot.gc_freeze import freeze_startup_objects, pause_collection


def test_pause_then_freeze_leaves_the_collector_on_with_the_startup_objects_frozen() -> None:
    was_enabled = gc.isenabled()
    try:
        pause_collection()
        assert not gc.isenabled()
        startup = [[i] for i in range(1000)]  # made "at start-up": frozen with the rest
        frozen = freeze_startup_objects()
        assert gc.isenabled()
        assert frozen == gc.get_freeze_count() and frozen > len(startup)
        # Garbage made afterwards is still collected.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        if not was_enabled:
            gc.disable()
