"""Run by tests/test_collect.py as a subprocess: a collection slow enough to be killed mid-run."""

import asyncio
import sys

from agentq.envs.toy import ToyEnv

from agentq.collect import acollect
from agentq.policies import RandomProposer
from agentq.search.mcts import MCTSConfig


class SlowRandom(RandomProposer):
    """The random policy, answering after 20 ms."""

    async def apropose(self, context, n, *, valid_actions=None):
        await asyncio.sleep(0.02)
        return self.propose(context, n, valid_actions=valid_actions)


if __name__ == "__main__":
    out, tasks = sys.argv[1], int(sys.argv[2])
    env = ToyEnv(n_train=tasks)
    asyncio.run(
        acollect(
            lambda: ToyEnv(n_train=tasks),
            env.tasks("train"),
            SlowRandom(0),
            MCTSConfig(iterations=6, n=3, rollout="policy"),
            out,
            resume=True,
            concurrency=4,
        )
    )
