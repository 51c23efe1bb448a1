"""Evaluation episodes as a remote worker runs them (``agentq eval --backend ray``).

Each worker builds the environment pool, the policy (sampling and greedy twins) and the scorers
once; the driver sends it (method, task) episodes and writes the trajectories it gets back.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentq.eval.runner import Method, arun_episode, build_policies, build_scorers
from agentq.types import Trajectory


@dataclass
class EpisodeWork:
    """One worker's evaluation work (:class:`agentq.backends.ray.RemoteWork`).

    Items are ``{"method": Method.to_dict(), "task_id": ...}``; each result is the
    trajectory's plain-JSON form.
    """

    env_factory: Callable[[], Any]
    policies_factory: Callable[[], tuple[Any, Any]]
    """Builds (sampling proposer, greedy proposer)."""
    scorers_factory: Callable[[], dict[str, Any]]
    """Builds SCORER spec -> Scorer for the best-of-n methods."""
    max_steps: int = 15
    seed: int = 0

    def setup(self) -> None:
        """Build the policy twins and scorers (once per worker)."""
        self._sampler, self._greedy = self.policies_factory()
        self._scorers = self.scorers_factory()
        self._envs: list[Any] = []

    async def run(self, item: dict[str, Any]) -> dict[str, Any]:
        """Run one (method, task) episode."""
        method = Method(**item["method"])
        env = self._envs.pop() if self._envs else await asyncio.to_thread(self.env_factory)
        try:
            traj = await arun_episode(
                env,
                item["task_id"],
                method,
                self._sampler,
                greedy_proposer=self._greedy,
                scorer=self._scorers.get(method.scorer or ""),
                max_steps=self.max_steps,
                seed=self.seed,
            )
        finally:
            self._envs.append(env)
        return traj.to_dict()

    def failed(self, item: dict[str, Any], reason: str) -> dict[str, Any]:
        """The record of an episode whose worker kept dying."""
        return Trajectory(task_id=item["task_id"], context=[], error=reason).to_dict()


def episode_work(
    *,
    env: str,
    env_options: dict[str, Any],
    policy: str,
    seed: int,
    temperature: float,
    policy_options: dict[str, Any],
    scorer_specs: Sequence[str],
    scorer_options: dict[str, Any],
    max_steps: int,
) -> EpisodeWork:
    """The :class:`EpisodeWork` of an ``agentq eval`` run (all builders picklable)."""
    from agentq.environments import make

    return EpisodeWork(
        env_factory=functools.partial(make, env, **env_options),
        policies_factory=functools.partial(
            build_policies, policy, seed=seed, temperature=temperature, options=policy_options
        ),
        scorers_factory=functools.partial(
            build_scorers,
            list(scorer_specs),
            env=env,
            env_options=env_options,
            options=scorer_options,
        ),
        max_steps=max_steps,
        seed=seed,
    )


def start_ray_eval(options: Any, *, concurrency: int = 1, **work: Any) -> Any:
    """A started ``RayBackend`` running the episodes of an ``agentq eval`` run.

    ``options`` is an ``agentq.backends.ray.RayOptions``; ``work`` the :func:`episode_work`
    arguments. Fails (``UserInputError``) before anything is written when Ray cannot be reached
    or a worker cannot build the policy or a scorer.
    """
    from agentq.backends.ray import RayBackend

    backend = RayBackend(episode_work(**work), options, concurrency=concurrency)
    backend.start()
    return backend
