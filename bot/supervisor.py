"""Supervised asyncio tasks: a component that crashes is logged and restarted with backoff, never
left silently dead; cancellation (shutdown) passes straight through."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from models.backoff import capped_delay

log = logging.getLogger(__name__)


@dataclass
class ComponentState:
    name: str
    running: bool = False
    restarts: int = 0
    last_error: str | None = None


@dataclass
class Supervisor:
    min_backoff: float = 1.0
    max_backoff: float = 60.0
    states: dict[str, ComponentState] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        state = self.states.setdefault(name, ComponentState(name))
        task = asyncio.create_task(self._keep_running(state, factory), name=name)
        self.tasks.append(task)
        return task

    async def _keep_running(self, state: ComponentState, factory: Callable[[], Awaitable[None]]) -> None:
        failures = 0  # restarts in a row: each waits twice as long (models/backoff.py), up to max_backoff
        while True:
            state.running = True
            try:
                await factory()
                log.warning("component %s stopped by itself; restarting", state.name)
                failures = 1  # not a crash: the count starts again
                delay = capped_delay(failures, base=self.min_backoff, cap=self.max_backoff)
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:
                failures += 1
                delay = capped_delay(failures, base=self.min_backoff, cap=self.max_backoff)
                state.last_error = f"{exc.__class__.__name__}: {exc}"[:500]
                log.exception("component %s crashed; restarting in %.1f s", state.name, delay)
            state.running = False
            state.restarts += 1
            await asyncio.sleep(delay)

    async def stop(self, grace: float = 10.0) -> None:
        """Cancel every component and wait (bounded) for them to finish their current unit of work."""
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            _done, pending = await asyncio.wait(self.tasks, timeout=grace)
            for task in pending:
                log.warning("component %s did not stop within %.0f s", task.get_name(), grace)
        self.tasks.clear()
