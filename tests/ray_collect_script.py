"""Run by tests/test_ray.py as a subprocess: a Ray collection slow enough to be killed mid-run.

Usage: ray_collect_script.py OUT TASKS RAY_ADDRESS (the test's own local Ray instance).
"""

import asyncio
import sys

from agentq.envs.toy import ToyEnv

from agentq.backends.ray import RayBackend, RayOptions
from agentq.collect import CollectWork, acollect
from agentq.protocols import BaseProposer
from agentq.search.mcts import MCTSConfig
from agentq.types import Candidate

CONFIG = MCTSConfig(iterations=6, n=3, rollout="random", seed=5)


class SlowAllValid(BaseProposer):
    """The first n valid actions (deterministic), after 50 ms."""

    async def apropose(self, context, n, *, valid_actions=None):
        await asyncio.sleep(0.05)
        return [Candidate(a) for a in (valid_actions or [])[:n]]


if __name__ == "__main__":
    out, tasks, address = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    work = CollectWork(ToyEnv, SlowAllValid, CONFIG, models={"policy": "slow-all-valid"})
    backend = RayBackend(work, RayOptions(address=address, workers=2), concurrency=2)
    try:
        asyncio.run(
            acollect(
                None,
                ToyEnv().tasks("train")[:tasks],
                None,
                CONFIG,
                out,
                resume=True,
                backend=backend,
                models=work.models,
            )
        )
    finally:
        backend.close()
