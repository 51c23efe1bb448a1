"""``agentq collect``: MCTS over many tasks at once, written to trees.jsonl as each finishes.

Tasks run concurrently on an execution backend (asyncio with bounded concurrency here; the
backend is a small protocol so a Ray backend can spread tasks over machines). Environments are
pooled: at most ``concurrency`` instances exist, each reused task after task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentq.data.trees import TreeWriter
from agentq.search.mcts import MCTSConfig, MCTSStats, run_mcts
from agentq.types import TaskTree


class CollectionBackend(Protocol):
    """Runs one coroutine per task and hands each result to ``on_done`` as it finishes."""

    async def run(
        self,
        task_ids: Sequence[str],
        work: Callable[[str], Awaitable[TaskTree]],
        on_done: Callable[[TaskTree], None],
    ) -> None:
        """Run ``work(task_id)`` for every task."""
        ...


@dataclass
class AsyncioBackend:
    """All tasks on one event loop, at most ``concurrency`` at a time."""

    concurrency: int = 16

    async def run(self, task_ids, work, on_done) -> None:  # noqa: D102 - see protocol
        sem = asyncio.Semaphore(max(1, self.concurrency))

        async def one(tid: str) -> None:
            async with sem:
                on_done(await work(tid))

        await asyncio.gather(*(one(t) for t in task_ids))


@dataclass
class CollectSummary:
    """What a collection run did (printed at the end of ``agentq collect``)."""

    tasks: int = 0
    skipped: int = 0
    failed: int = 0
    nodes: int = 0
    best_rewards: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    stats: MCTSStats = field(default_factory=MCTSStats)

    @property
    def mean_best_reward(self) -> float:
        """Mean over finished tasks of the best reward found."""
        return sum(self.best_rewards) / len(self.best_rewards) if self.best_rewards else 0.0


class EnvPool:
    """Reuses environment instances across tasks; creates at most as many as are in use."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory
        self._free: list[Any] = []

    async def acquire(self) -> Any:
        """An idle environment, created in a worker thread when none is free."""
        if self._free:
            return self._free.pop()
        return await asyncio.to_thread(self.factory)

    def release(self, env: Any) -> None:
        """Return ``env`` to the pool."""
        self._free.append(env)


async def collect_task(
    env: Any,
    task_id: str,
    proposer: Any,
    config: MCTSConfig,
    *,
    rollout_scorer: Any = None,
    rollout_proposer: Any = None,
    stats: MCTSStats | None = None,
) -> TaskTree:
    """One task's MCTS tree; a task that fails becomes a ``status="failed"`` tree with the reason.

    The one per-task function of every backend (the asyncio one here, Ray's workers).
    """
    try:
        return await run_mcts(
            env,
            task_id,
            proposer,
            config,
            rollout_scorer=rollout_scorer,
            rollout_proposer=rollout_proposer,
            stats=stats,
        )
    except Exception as e:  # one task's failure is recorded, the run goes on
        return failed_tree(
            task_id, f"{type(e).__name__}: {e}", config, env=getattr(env, "name", "")
        )


def failed_tree(task_id: str, reason: str, config: MCTSConfig, *, env: str = "") -> TaskTree:
    """The record of a task that produced no tree."""
    return TaskTree(
        task_id=task_id,
        context=[],
        nodes=[],
        env=env,
        status="failed",
        error=reason,
        config=config.to_dict(),
    )


@dataclass
class CollectWork:
    """Collection as a remote backend's worker runs it (:class:`agentq.backends.ray.RemoteWork`).

    Holds picklable builders, not built objects: ``setup`` builds the proposer and the rollout
    scorer once per worker process (a local model is loaded once per worker), and environments
    are pooled per worker as in :func:`acollect`.
    """

    env_factory: Callable[[], Any]
    proposer_factory: Callable[[], Any]
    config: MCTSConfig
    rollout_scorer_factory: Callable[[], Any] | None = None
    models: dict[str, Any] | None = None

    def setup(self) -> None:
        """Build the proposer, the rollout scorer and the environment pool (once per worker)."""
        self._proposer = self.proposer_factory()
        self._scorer = self.rollout_scorer_factory() if self.rollout_scorer_factory else None
        self._pool = EnvPool(self.env_factory)
        self._stats = MCTSStats()

    async def run(self, task_id: str) -> dict[str, Any]:
        """Search one task; its tree as a trees.jsonl record."""
        env = await self._pool.acquire()
        try:
            tree = await collect_task(
                env,
                task_id,
                self._proposer,
                self.config,
                rollout_scorer=self._scorer,
                stats=self._stats,
            )
        finally:
            self._pool.release(env)
        tree.models = dict(self.models or {})
        return tree.to_dict()

    def failed(self, task_id: str, reason: str) -> dict[str, Any]:
        """The failed-task record of a task whose worker kept dying."""
        tree = failed_tree(task_id, reason, self.config)
        tree.models = dict(self.models or {})
        return tree.to_dict()


async def acollect(
    env_factory: Callable[[], Any],
    task_ids: Sequence[str],
    proposer: Any,
    config: MCTSConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    concurrency: int = 16,
    rollout_scorer: Any = None,
    rollout_proposer: Any = None,
    backend: CollectionBackend | None = None,
    models: dict[str, Any] | None = None,
    progress: bool = False,
    on_tree: Callable[[TaskTree], None] | None = None,
) -> CollectSummary:
    """Collect one MCTS tree per task; append each to ``out`` as soon as it is finished.

    ``rollout_proposer`` plays the ``rollout="policy"`` simulations (default: ``proposer``).

    With ``resume`` the tasks already in ``out`` are skipped (a torn last line is dropped). A
    task whose proposer fails is written with ``status="failed"`` and the reason; the run goes on.
    """
    writer = TreeWriter(out, resume=resume, overwrite=overwrite) if out is not None else None
    summary = CollectSummary()
    todo = [t for t in task_ids if writer is None or t not in writer.finished]
    summary.skipped = len(task_ids) - len(todo)
    pool = EnvPool(env_factory)
    backend = backend or AsyncioBackend(concurrency)
    models = models or {"policy": getattr(proposer, "spec", type(proposer).__name__)}
    bar = _Progress(len(todo), enabled=progress)
    t0 = time.perf_counter()

    async def work(tid: str) -> TaskTree:
        env = await pool.acquire()
        try:
            tree = await collect_task(
                env,
                tid,
                proposer,
                config,
                rollout_scorer=rollout_scorer,
                rollout_proposer=rollout_proposer,
                stats=summary.stats,
            )
        finally:
            pool.release(env)
        tree.models = models
        return tree

    def done(tree: TaskTree) -> None:
        if writer is not None:
            writer.write_tree(tree)
        summary.tasks += 1
        if tree.status == "ok":
            summary.nodes += len(tree.nodes)
            summary.best_rewards.append(tree.best_reward)
        else:
            summary.failed += 1
        bar.update(summary)
        if on_tree is not None:
            on_tree(tree)

    try:
        await backend.run(todo, work, done)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def collect(*args: Any, **kwargs: Any) -> CollectSummary:
    """Sync twin of :func:`acollect`."""
    return asyncio.run(acollect(*args, **kwargs))


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="tasks", unit="task", dynamic_ncols=True)

    def update(self, s: CollectSummary) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(nodes=s.nodes, best=f"{s.mean_best_reward:.2f}", failed=s.failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
