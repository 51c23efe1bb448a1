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
import sys
import threading
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
    """The generators of one task: one :class:`random.Random` per stream name, and counters of
    repeated requests (:meth:`occurrence`) for components that seed each request by its content."""

    seed: int
    task_id: str
    streams: dict[str, random.Random] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def rng(self, stream: str) -> random.Random:
        """The generator of ``stream`` for this task (created on first use)."""
        g = self.streams.get(stream)
        if g is None:
            g = self.streams[stream] = random.Random(task_seed(self.seed, self.task_id, stream))
        return g

    def occurrence(self, owner: str, key: str) -> int:
        """How many times ``owner`` asked about ``key`` before in this task (0 the first time).

        A component that seeds a request from its content (a local model's sampling) adds this
        count, so a repeated request draws anew, and the draws of a task depend only on the
        task's own requests: never on other tasks, other methods, or a resume.
        """
        with self._lock:
            k = (owner, key)
            n = self.counts.get(k, 0)
            self.counts[k] = n + 1
            return n


_CURRENT: ContextVar[TaskRandom | None] = ContextVar("agentq_task_random", default=None)


@contextmanager
def task_scope(seed: int, task_id: str) -> Iterator[TaskRandom]:
    """Make ``(seed, task_id)`` the current task for :func:`task_rng` inside the block."""
    scope = TaskRandom(seed, task_id)
    token = _CURRENT.set(scope)
    try:
        yield scope
    finally:
        _CURRENT.reset(token)


def current_task() -> TaskRandom | None:
    """The task scope in effect, or None outside any."""
    return _CURRENT.get()


def task_rng(stream: str, default: random.Random) -> random.Random:
    """The current task's generator for ``stream``; ``default`` outside a task scope."""
    cur = _CURRENT.get()
    return cur.rng(stream) if cur is not None else default


def scoped_seed(seed: int, owner: object, stream: str, key: str = "") -> int | None:
    """A seed for one call of ``owner`` inside the current task scope (None outside one).

    It derives from ``seed``, the scope's seed and task id, the ``stream`` name, ``key`` and how
    many times ``owner`` (counted by identity) asked about ``key`` before in this task. A
    component whose calls take a seed (an OpenAI-compatible server's ``seed`` field) uses it so
    its draws on a task depend only on that task's own calls.
    """
    scope = _CURRENT.get()
    if scope is None:
        return None
    n = scope.occurrence(f"{stream}:{id(owner)}", key)
    return task_seed(seed, scope.task_id, f"{scope.seed}|{stream}|{key}|{n}") % (2**31)


def reseed_globals(seed: int) -> None:
    """Reseed the process-wide generators a task may draw from without asking for a stream:
    :mod:`random`'s, and numpy's and torch's when they are imported (an episode's start)."""
    random.seed(seed)
    if "numpy" in sys.modules:
        import numpy as np

        np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


__all__ = [
    "TaskRandom",
    "current_task",
    "reseed_globals",
    "scoped_seed",
    "task_rng",
    "task_scope",
    "task_seed",
]
