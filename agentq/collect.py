"""``agentq collect``: MCTS over many tasks at once, written to trees.jsonl as each finishes.

Tasks run concurrently on an execution backend (asyncio with bounded concurrency here; the
backend is a small protocol so a Ray backend can spread tasks over machines). Environments are
pooled: at most ``concurrency`` instances exist, each reused task after task.
:class:`CollectConfig` holds the settings of a run (the ``agentq collect`` flags) and
:func:`run_collection` does what the command does.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agentq.backends import ExecutionConfig
from agentq.config import key_values_option, nested, option, validate
from agentq.data.trees import TreeWriter
from agentq.errors import UserInputError
from agentq.protocols import Env, Proposer, Scorer, as_proposer
from agentq.search.mcts import ROLLOUTS, MCTSConfig, MCTSStats, run_mcts
from agentq.types import TaskTree

if TYPE_CHECKING:
    from agentq.backends.ray import RayBackend, RayOptions


@dataclass
class CollectConfig:
    """What ``agentq collect`` runs: MCTS with a policy over the tasks of an environment split.

    The search settings' defaults and checks are :class:`~agentq.search.mcts.MCTSConfig`'s
    (:meth:`mcts_config`); the rest are checked here.
    """

    env: str = option("toy", help="Environment name (agentq.envs registry).")
    split: str = option("train", help="Task split.")
    policy: str = option("random", help="MODEL spec of the proposer.")
    out: Path = option(Path("trees.jsonl"), help="Output trees.jsonl.")
    tasks: int = option(0, help="Number of tasks (0 = all of the split).", lo=0)
    iterations: int = option(MCTSConfig.iterations, help="MCTS iterations per task.")
    n: int = option(MCTSConfig.n, help="Candidates per expansion.")
    depth: int = option(MCTSConfig.max_depth, help="Depth limit.")
    c: float = option(MCTSConfig.c, help="UCT exploration constant.")
    rollout: str = option(MCTSConfig.rollout, help="Leaf valuation: " + "|".join(ROLLOUTS) + ".")
    rollout_scorer: str = option("", help="SCORER spec for --rollout scorer.")
    depth_limit_reward: float = option(
        MCTSConfig.depth_limit_reward, help="Return of a simulation cut at the depth limit."
    )
    early_stop: bool = option(
        MCTSConfig.early_stop, help="Stop a task at its first full-reward leaf."
    )
    concurrency: int = option(16, help="Tasks searched at once (over all Ray workers).", lo=1)
    seed: int = option(MCTSConfig.seed, help="Seed of every random choice.")
    execution: ExecutionConfig = nested(ExecutionConfig)
    env_options: dict[str, Any] = key_values_option(
        "env_option", help="key=value passed to the env."
    )
    resume: bool = option(False, help="Continue an existing output, skipping finished tasks.")
    overwrite: bool = option(False, help="Replace an existing output.")
    progress: bool = option(True, help="Show a progress bar.")

    def __post_init__(self) -> None:
        validate(self)
        self.out = Path(self.out)
        self.mcts_config()  # the search settings' own checks, before anything runs
        if self.rollout == "scorer" and not self.rollout_scorer:
            raise UserInputError("--rollout scorer needs --rollout-scorer SPEC")

    def mcts_config(self) -> MCTSConfig:
        """The search settings (``UserInputError`` when one is out of range)."""
        try:
            return MCTSConfig(
                iterations=self.iterations,
                n=self.n,
                max_depth=self.depth,
                c=self.c,
                rollout=self.rollout,
                early_stop=self.early_stop,
                depth_limit_reward=self.depth_limit_reward,
                seed=self.seed,
            )
        except (ValueError, TypeError) as e:
            raise UserInputError(str(e)) from e

    @property
    def models(self) -> dict[str, Any]:
        """The model specs a tree records."""
        return {"policy": self.policy, "rollout_scorer": self.rollout_scorer or None}


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

    async def run(
        self,
        task_ids: Sequence[str],
        work: Callable[[str], Awaitable[TaskTree]],
        on_done: Callable[[TaskTree], None],
    ) -> None:
        """Run ``work(task_id)`` for every task, at most ``concurrency`` at once."""
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

    def __init__(self, factory: Callable[[], Env]) -> None:
        self.factory = factory
        self._free: list[Env] = []

    async def acquire(self) -> Env:
        """An idle environment, created in a worker thread when none is free."""
        if self._free:
            return self._free.pop()
        return await asyncio.to_thread(self.factory)

    def release(self, env: Env) -> None:
        """Return ``env`` to the pool."""
        self._free.append(env)


async def collect_task(
    env: Env,
    task_id: str,
    proposer: Proposer,
    config: MCTSConfig,
    *,
    rollout_scorer: Scorer | None = None,
    rollout_proposer: Proposer | None = None,
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

    env_factory: Callable[[], Env]
    proposer_factory: Callable[[], Proposer]
    config: MCTSConfig
    rollout_scorer_factory: Callable[[], Scorer] | None = None
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
    env_factory: Callable[[], Env] | None,
    task_ids: Sequence[str],
    proposer: Proposer | None,
    config: MCTSConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    concurrency: int = 16,
    rollout_scorer: Scorer | None = None,
    rollout_proposer: Proposer | None = None,
    backend: CollectionBackend | None = None,
    models: dict[str, Any] | None = None,
    progress: bool = False,
    on_tree: Callable[[TaskTree], None] | None = None,
) -> CollectSummary:
    """Collect one MCTS tree per task; append each to ``out`` as soon as it is finished.

    ``rollout_proposer`` plays the ``rollout="policy"`` simulations (default: ``proposer``).
    ``env_factory`` and ``proposer`` may be None when ``backend`` builds its own (Ray's
    workers do).

    With ``resume`` the tasks already in ``out`` are skipped (a torn last line is dropped). A
    task whose proposer fails is written with ``status="failed"`` and the reason; the run goes on.
    """
    writer = TreeWriter(out, resume=resume, overwrite=overwrite) if out is not None else None
    summary = CollectSummary()
    todo = [t for t in task_ids if writer is None or t not in writer.finished]
    summary.skipped = len(task_ids) - len(todo)
    backend = backend or AsyncioBackend(concurrency)
    if proposer is not None:
        proposer = as_proposer(proposer)
    if models is None:
        models = {"policy": proposer.spec if proposer is not None else None}
    bar = _Progress(len(todo), enabled=progress)
    pool = EnvPool(env_factory) if env_factory is not None else None
    t0 = time.perf_counter()

    async def work(tid: str) -> TaskTree:
        if pool is None or proposer is None:
            raise ValueError("the local backend needs an env_factory and a proposer")
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
        tree.models = dict(models)
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


def run_collection(config: CollectConfig) -> CollectSummary:
    """What ``agentq collect`` does: check the output, build the environment and the models
    (here, or on Ray's workers for ``backend="ray"``), search every task, write trees.jsonl."""
    from agentq.data.jsonl import check_output_path
    from agentq.data.trees import finished_tasks
    from agentq.environments import EnvSource
    from agentq.specs import resolve_policy, resolve_scorer

    cfg = config
    check_output_path(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite)
    if cfg.resume:
        finished_tasks(cfg.out)  # a file of other records fails here, before any work
    source = EnvSource(cfg.env, cfg.env_options)
    task_ids = source.task_ids(cfg.split, cfg.tasks)
    search = cfg.mcts_config()
    ray_opts = cfg.execution.ray_options()
    make_env: Callable[[], Env] | None = None
    proposer: Proposer | None = None
    scorer: Scorer | None = None
    ray_backend: RayBackend | None = None
    if ray_opts is not None:  # the workers build env, policy and scorer; the driver writes
        ray_backend = ray_collection_backend(ray_opts, cfg, search)
    else:
        proposer = resolve_policy(cfg.policy, seed=cfg.seed)
        scorer = resolve_scorer(cfg.rollout_scorer) if cfg.rollout_scorer else None
        make_env = source

    try:
        return collect(
            make_env,
            task_ids,
            proposer,
            search,
            cfg.out,
            resume=cfg.resume,
            overwrite=cfg.overwrite,
            concurrency=cfg.concurrency,
            rollout_scorer=scorer,
            backend=ray_backend,
            models=cfg.models,
            progress=cfg.progress,
        )
    finally:
        if ray_backend is not None:
            ray_backend.close()


def ray_collection_backend(
    options: RayOptions, config: CollectConfig, search: MCTSConfig
) -> RayBackend:
    """A started ``RayBackend`` for ``agentq collect`` (workers build env, policy and scorer)."""
    from agentq.backends.ray import RayBackend
    from agentq.environments import make
    from agentq.specs import resolve_policy, resolve_scorer

    work = CollectWork(
        env_factory=functools.partial(make, config.env, **config.env_options),
        proposer_factory=functools.partial(resolve_policy, config.policy, seed=config.seed),
        config=search,
        rollout_scorer_factory=(
            functools.partial(resolve_scorer, config.rollout_scorer)
            if config.rollout_scorer
            else None
        ),
        models=config.models,
    )
    backend = RayBackend(work, options, concurrency=config.concurrency)
    backend.start()  # a bad address or model spec fails here, before anything is written
    return backend
