"""The seeded generator per task: every random choice of a task draws from streams seeded by
(seed, task id, stream name), whatever the concurrency, the split of a run, a resume, or the
order tasks run in.

:func:`run_mcts` (and any runner) enters :func:`task_scope` for the task it works on; code that
draws at random (the ``random`` policy and scorer, rollouts) asks :func:`task_rng` for its own
named stream. The scope lives in a :class:`contextvars.ContextVar`, so concurrent asyncio
tasks (and the worker threads ``asyncio.to_thread`` starts for them) each see their own.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


def task_seed(seed: int, task_id: str, stream: str = "") -> int:
    """A seed for ``task_id`` (and a named stream) that does not depend on task order."""
    key = f"{seed}|{task_id}" + (f"|{stream}" if stream else "")
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)


@dataclass
class TaskRandom:
    """The generators of one task: one :class:`random.Random` per stream name."""

    seed: int
    task_id: str
    streams: dict[str, random.Random] = field(default_factory=dict)

    def rng(self, stream: str) -> random.Random:
        """The generator of ``stream`` for this task (created on first use)."""
        g = self.streams.get(stream)
        if g is None:
            g = self.streams[stream] = random.Random(task_seed(self.seed, self.task_id, stream))
        return g


_CURRENT: ContextVar[TaskRandom | None] = ContextVar("agentq_task_random", default=None)


@contextmanager
def task_scope(seed: int, task_id: str) -> Iterator[TaskRandom]:
    """Make ``(seed, task_id)`` the current task for :func:`task_rng` inside the block."""
    token = _CURRENT.set(TaskRandom(seed, task_id))
    try:
        yield _CURRENT.get()  # type: ignore[misc]
    finally:
        _CURRENT.reset(token)


def current_task() -> TaskRandom | None:
    """The task scope in effect, or None outside any."""
    return _CURRENT.get()


def task_rng(stream: str, default: random.Random) -> random.Random:
    """The current task's generator for ``stream``; ``default`` outside a task scope."""
    cur = _CURRENT.get()
    return cur.rng(stream) if cur is not None else default


__all__ = ["TaskRandom", "current_task", "task_rng", "task_scope", "task_seed"]
