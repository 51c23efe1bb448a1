"""Collection throughput and MCTS bookkeeping overhead, measured side by side in one run.

1. A proposer that answers after a fixed 50 ms, the toy env: tasks/s at concurrency 32 vs 1
   (the issue asks for >= 20x).
2. A proposer that answers after 1 ms at concurrency 1: the share of wall time spent in MCTS
   bookkeeping, i.e. everything but proposer and environment calls (asked: < 10%).

Run: ``python benchmarks/bench_collect.py [--tasks 128]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from agentq.envs.toy import ToyEnv

from agentq.collect import acollect
from agentq.policies import RandomProposer
from agentq.search.mcts import MCTSConfig


class SleepyRandom(RandomProposer):
    """The random policy behind a fixed latency (a stand-in for a remote model's round trip)."""

    def __init__(self, latency_s: float) -> None:
        super().__init__(seed=0)
        self.latency_s = latency_s

    async def apropose(self, context, n, *, valid_actions=None):
        await asyncio.sleep(self.latency_s)
        return self.propose(context, n, valid_actions=valid_actions)


def run(latency: float, concurrency: int, tasks: int, iterations: int):
    cfg = MCTSConfig(iterations=iterations, n=3, rollout="random", seed=0)
    env = ToyEnv(n_train=tasks)
    t = time.perf_counter()
    s = asyncio.run(
        acollect(
            lambda: ToyEnv(n_train=tasks),
            env.tasks("train"),
            SleepyRandom(latency),
            cfg,
            None,
            concurrency=concurrency,
        )
    )
    wall = time.perf_counter() - t
    return s, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=10)
    args = ap.parse_args()

    s1, w1 = run(0.050, 1, args.tasks // 4, args.iterations)
    s32, w32 = run(0.050, 32, args.tasks, args.iterations)
    tps1, tps32 = s1.tasks / w1, s32.tasks / w32
    print(
        f"50 ms proposer | concurrency 1: {tps1:.2f} tasks/s ({s1.tasks} tasks, {w1:.1f}s) | "
        f"concurrency 32: {tps32:.2f} tasks/s ({s32.tasks} tasks, {w32:.1f}s) | "
        f"ratio {tps32 / tps1:.1f}x (target >= 20x)"
    )

    s, wall = run(0.001, 1, args.tasks // 2, args.iterations * 3)
    book = wall - s.stats.proposer_s - s.stats.env_s
    print(
        f"1 ms proposer, concurrency 1: wall {wall:.2f}s | proposer {s.stats.proposer_s:.2f}s "
        f"({s.stats.proposer_calls} calls) | env {s.stats.env_s:.2f}s ({s.stats.env_calls} calls) | "
        f"bookkeeping {book:.2f}s = {100 * book / wall:.1f}% of wall (target < 10%)"
    )


if __name__ == "__main__":
    main()
