"""Monte Carlo Tree Search over an environment's actions (UCT, lazy stepping, running means).

One call of :func:`run_mcts` builds the tree of one task. Each iteration selects down the tree
by UCT on each child's mean return, expands a leaf with N candidates from the Proposer
(identical candidates merged, their counts kept), steps the chosen child in the environment,
values it by a rollout to a terminal state, and backs the return up as a running mean.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from agentq.errors import ProposerError
from agentq.policies import merge_candidates
from agentq.protocols import Env, Proposer, Scorer, has_snapshots, seed_env
from agentq.render import context_along
from agentq.seeding import task_scope, task_seed
from agentq.types import Candidate, Context, TaskTree, TreeNode

ROLLOUTS = ("policy", "random", "scorer", "none")
MAX_N = 1024
"""Most candidates one expansion may ask for (a bound on memory, not a tuning knob)."""
MAX_ITERATIONS = 1_000_000
MAX_DEPTH = 10_000

__all__ = ["ROLLOUTS", "MCTSConfig", "MCTSStats", "run_mcts", "task_seed"]


@dataclass
class MCTSConfig:
    """Search settings (the ``agentq collect`` flags)."""

    iterations: int = 30
    n: int = 5
    """Candidate actions proposed per expansion."""
    max_depth: int = 10
    c: float = 1.41
    """UCT exploration constant."""
    rollout: str = "policy"
    """Leaf valuation: ``policy`` (the rollout policy's first sample: the proposer's own unless
    a separate ``rollout_proposer`` is given), ``random`` (random valid action),
    ``scorer`` (the rollout Scorer's score of the leaf action), ``none`` (step reward only)."""
    depth_limit_reward: float = 0.0
    """Return given to a simulation cut off at ``max_depth``."""
    early_stop: bool = False
    """Stop a task's iterations at the first simulation that reaches ``full_reward``."""
    full_reward: float = 1.0
    seed: int = 0
    use_snapshots: bool = True
    """Restore states by ``snapshot``/``restore`` when the env offers them (replay otherwise)."""
    env_in_thread: bool = True
    """Run environment calls in a worker thread so CPU-bound envs never stall the event loop."""

    def __post_init__(self) -> None:
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"rollout must be one of {ROLLOUTS}, not {self.rollout!r}")
        if self.iterations < 1 or self.n < 1 or self.max_depth < 1:
            raise ValueError("iterations, n and max_depth must be >= 1")
        for name, value, most in (
            ("iterations", self.iterations, MAX_ITERATIONS),
            ("n", self.n, MAX_N),
            ("max_depth", self.max_depth, MAX_DEPTH),
        ):
            if value > most:
                raise ValueError(f"{name} must be at most {most}, not {value}")
        if not (math.isfinite(self.c) and self.c >= 0):
            raise ValueError(
                f"c (the UCT exploration constant) must be finite and >= 0, not {self.c}"
            )
        for name, r in (
            ("depth_limit_reward", self.depth_limit_reward),
            ("full_reward", self.full_reward),
        ):
            if not math.isfinite(r):
                raise ValueError(f"{name} must be finite, not {r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (recorded in each tree)."""
        return asdict(self)


@dataclass
class MCTSStats:
    """Where a search spent its time (for benchmarks and progress)."""

    proposer_s: float = 0.0
    env_s: float = 0.0
    scorer_s: float = 0.0
    proposer_calls: int = 0
    env_calls: int = 0
    iterations: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class _Search:
    def __init__(
        self,
        env: Any,  # an Env; snapshot/restore are used when has_snapshots(env)
        task_id: str,
        proposer: Proposer,
        config: MCTSConfig,
        rollout_scorer: Scorer | None,
        stats: MCTSStats,
        on_progress: Callable[[TaskTree], None] | None,
        rollout_proposer: Proposer | None = None,
    ) -> None:
        self.env, self.task_id, self.proposer, self.cfg = env, task_id, proposer, config
        self.rollout_scorer = rollout_scorer
        self.rollout_proposer = rollout_proposer if rollout_proposer is not None else proposer
        self.stats = stats
        self.on_progress = on_progress
        self.rng = random.Random(task_seed(config.seed, task_id))  # the random rollouts
        self.snapshots_ok = config.use_snapshots and has_snapshots(env)
        self.snaps: dict[int, Any] = {}
        self.env_at: int | None = None
        self.tree: TaskTree | None = None

    # -- environment access ---------------------------------------------------------------
    async def _env(self, fn: Callable[..., Any], *args: Any) -> Any:
        t = time.perf_counter()
        try:
            if self.cfg.env_in_thread:
                return await asyncio.to_thread(fn, *args)
            return fn(*args)
        finally:
            self.stats.env_s += time.perf_counter() - t
            self.stats.env_calls += 1

    async def _goto(self, node: TreeNode) -> None:
        """Put the environment in ``node``'s state (snapshot or replay from reset)."""
        if self.env_at == node.id:
            return
        if self.snapshots_ok and node.id in self.snaps:
            await self._env(self.env.restore, self.snaps[node.id])
        else:
            assert self.tree is not None
            await self._env(self.env.reset, self.task_id)
            for n in self.tree.path(node):
                await self._env(self.env.step, n.action)
        self.env_at = node.id

    def context_of(self, node: TreeNode) -> Context:
        assert self.tree is not None
        return context_along(
            self.tree.context, [(n.action or "", n.observation or "") for n in self.tree.path(node)]
        )

    async def _propose(
        self, context: Context, n: int, valid: list[str] | None, proposer: Proposer | None = None
    ) -> list[Candidate]:
        t = time.perf_counter()
        try:
            cands = await (proposer or self.proposer).apropose(context, n, valid_actions=valid)
        except ProposerError:
            raise
        except Exception as e:  # a proposer fault fails this task, not the run
            raise ProposerError(f"proposer raised {type(e).__name__}: {e}") from e
        finally:
            self.stats.proposer_s += time.perf_counter() - t
            self.stats.proposer_calls += 1
        if len(cands) < n:
            raise ProposerError(f"proposer returned {len(cands)} candidates, {n} asked")
        if any(not (c.text or "").strip() for c in cands):
            raise ProposerError("proposer returned an empty action")
        return cands

    # -- the algorithm ----------------------------------------------------------------------
    def _select(self, node: TreeNode) -> TreeNode:
        assert self.tree is not None
        best, best_u = None, -math.inf
        log_n = math.log(max(node.visits, 1))
        for ch in self.tree.children(node):
            if ch.visits == 0:
                return ch
            u = ch.q + self.cfg.c * math.sqrt(log_n / ch.visits)
            if u > best_u:
                best, best_u = ch, u
        assert best is not None
        return best

    async def _expand(self, node: TreeNode) -> None:
        assert self.tree is not None
        await self._goto(node)
        valid = await self._env(self.env.valid_actions)
        cands = merge_candidates(await self._propose(self.context_of(node), self.cfg.n, valid))
        for c in cands:
            child = TreeNode(
                id=len(self.tree.nodes),
                parent=node.id,
                action=c.text,
                depth=node.depth + 1,
                count=c.count,
                logprob=c.logprob,
            )
            self.tree.nodes.append(child)
            node.children.append(child.id)

    async def _step_child(self, child: TreeNode) -> float:
        """Execute ``child``'s action from its parent's state; the reward of this draw.

        The first draw sets the node's observation, reward, done flag and info together (they
        always belong to one draw). A terminal node is stepped again on every revisit (a fresh
        draw of a stochastic outcome); each draw is counted in ``child.outcomes`` and its own
        reward is what the visit backs up, so ``q`` is the mean of the returns actually drawn.
        """
        assert self.tree is not None and child.parent is not None
        await self._goto(self.tree.nodes[child.parent])
        obs, reward, done, info = await self._env(self.env.step, child.action)
        reward = float(reward)
        if not child.stepped:
            child.observation, child.reward, child.done = obs, reward, bool(done)
            child.invalid = bool(info.get("invalid", False))
            child.info = {k: v for k, v in info.items() if _jsonable(v)}
            child.stepped = True
        else:
            child.add_outcome(obs, reward, bool(done))
        self.env_at = child.id
        if self.snapshots_ok and not child.done and child.id not in self.snaps:
            self.snaps[child.id] = await self._env(self.env.snapshot)
        return reward

    async def _rollout(self, leaf: TreeNode) -> float:
        """Return collected after ``leaf`` (its own step reward excluded)."""
        mode = self.cfg.rollout
        if leaf.done:
            return 0.0
        if leaf.depth >= self.cfg.max_depth:
            return self.cfg.depth_limit_reward
        if mode == "none":
            return 0.0
        if mode == "scorer":
            if self.rollout_scorer is None:
                raise ValueError("rollout='scorer' needs a rollout scorer")
            assert self.tree is not None and leaf.parent is not None and leaf.action is not None
            t = time.perf_counter()
            (v,) = await self.rollout_scorer.ascore(
                self.context_of(self.tree.nodes[leaf.parent]), [leaf.action]
            )
            self.stats.scorer_s += time.perf_counter() - t
            return float(v) - leaf.reward
        context = self.context_of(leaf)
        total, depth, done = 0.0, leaf.depth, False
        while not done and depth < self.cfg.max_depth:
            valid = await self._env(self.env.valid_actions)
            if mode == "random" and valid:
                action = self.rng.choice(valid)
            else:
                action = (await self._propose(context, 1, valid, self.rollout_proposer))[0].text
            obs, reward, done, _ = await self._env(self.env.step, action)
            self.env_at = None
            total += float(reward)
            depth += 1
            if not done:
                context = context_along(context, [(action, obs)])
        if not done:
            total += self.cfg.depth_limit_reward
        return total

    async def run(self) -> TaskTree:
        t0 = time.perf_counter()
        context = await self._env(self.env.reset, self.task_id)
        self.tree = tree = TaskTree(
            task_id=self.task_id,
            context=list(context),
            nodes=[TreeNode(id=0, parent=None, action=None, depth=0, stepped=True)],
            env=getattr(self.env, "name", ""),
            config=self.cfg.to_dict(),
        )
        self.env_at = 0
        if self.snapshots_ok:
            self.snaps[0] = await self._env(self.env.snapshot)
        for it in range(self.cfg.iterations):
            node, path = tree.root, [tree.root]
            leaf_value: float
            drawn: tuple[TreeNode, float] | None = None  # the node stepped now, its reward
            while True:
                if node.id != 0 and (not node.stepped or node.done):
                    # first visit (lazy step) or a terminal re-visit (fresh reward draw)
                    drawn = (node, await self._step_child(node))
                    leaf_value = await self._rollout(node)
                    break
                if node.depth >= self.cfg.max_depth:
                    leaf_value = self.cfg.depth_limit_reward
                    break
                if not node.children:
                    await self._expand(node)
                node = self._select(node)
                path.append(node)

            # back up: each node gets the return from its own step onwards
            rewards = [drawn[1] if drawn and n is drawn[0] else n.reward for n in path[1:]]
            ret = leaf_value
            for n, r in zip(reversed(path[1:]), reversed(rewards), strict=True):
                ret += r
                n.visits += 1
                n.value_sum += ret
            tree.root.visits += 1
            tree.root.value_sum += ret
            total = sum(rewards) + leaf_value
            reached_full = total >= self.cfg.full_reward - 1e-9
            tree.iterations = it + 1
            self.stats.iterations += 1
            if self.on_progress:
                self.on_progress(tree)
            if self.cfg.early_stop and reached_full:
                break
        tree.wall_s = time.perf_counter() - t0
        return tree


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, dict))


async def run_mcts(
    env: Env,
    task_id: str,
    proposer: Proposer,
    config: MCTSConfig | None = None,
    *,
    rollout_scorer: Scorer | None = None,
    rollout_proposer: Proposer | None = None,
    stats: MCTSStats | None = None,
    on_progress: Callable[[TaskTree], None] | None = None,
) -> TaskTree:
    """Build the MCTS tree of ``task_id`` in ``env`` with candidates from ``proposer``.

    ``rollout_proposer`` (a Proposer) plays the ``rollout="policy"`` simulations from new
    leaves; by default the ``proposer`` that expands the tree plays them too.

    If the environment has a ``seed(int)`` method (:class:`~agentq.protocols.SeedableEnv`) it
    is reseeded per task, so results do not depend on which tasks an environment instance ran
    before; the search runs inside
    :func:`agentq.seeding.task_scope`, so the ``random`` policy and scorer (and any component
    that asks :func:`~agentq.seeding.task_rng`) draw from generators seeded by (seed, task id).
    """
    config = config or MCTSConfig()
    seed_env(env, task_seed(config.seed, task_id))
    with task_scope(config.seed, task_id):  # policies and scorers draw from this task's streams
        search = _Search(
            env,
            task_id,
            proposer,
            config,
            rollout_scorer,
            stats if stats is not None else MCTSStats(),
            on_progress,
            rollout_proposer,
        )
        return await search.run()
