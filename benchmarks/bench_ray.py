"""Ray backend throughput on the toy environment with a proposer that answers after 50 ms.

Prints tasks/s with 1 and 2 Ray workers, and Ray's overhead per task against the local
asyncio backend at the same concurrency. Usage: python benchmarks/bench_ray.py [TASKS]
"""

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import ray
from agentq.envs.toy import ToyEnv

from agentq.backends.ray import RayBackend, RayOptions
from agentq.collect import CollectWork, acollect, collect
from agentq.protocols import BaseProposer
from agentq.search.mcts import MCTSConfig
from agentq.types import Candidate

CFG = MCTSConfig(iterations=4, n=2, rollout="none", seed=0)
CONC = 2


class Slow(BaseProposer):
    """The first n valid actions, after 50 ms."""

    async def apropose(self, context, n, *, valid_actions=None):
        await asyncio.sleep(0.05)
        return [Candidate(a) for a in (valid_actions or [])[:n]]


def on_ray(ids, workers, out):
    backend = RayBackend(
        CollectWork(ToyEnv, Slow, CFG), RayOptions(workers=workers), concurrency=CONC
    )
    backend.start()
    try:
        t = time.perf_counter()
        asyncio.run(acollect(None, ids, None, CFG, out, backend=backend, models={}))
        return time.perf_counter() - t
    finally:
        backend.close()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    ids = ToyEnv(n_train=n).tasks("train")[:n]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        d = Path(tempfile.mkdtemp())
        t = time.perf_counter()
        collect(lambda: ToyEnv(n_train=n), ids, Slow(), CFG, d / "local.jsonl", concurrency=CONC)
        local = time.perf_counter() - t
        one = on_ray(ids, 1, d / "r1.jsonl")
        two = on_ray(ids, 2, d / "r2.jsonl")
    finally:
        ray.shutdown()
    print(f"tasks {n}, concurrency {CONC} in total, proposer 50 ms")
    print(f"local asyncio : {n / local:.2f} tasks/s")
    print(f"ray 1 worker  : {n / one:.2f} tasks/s")
    print(f"ray 2 workers : {n / two:.2f} tasks/s  (x{one / two:.2f} vs 1 worker)")
    print(
        f"ray overhead per task vs local at concurrency {CONC}: {(two - local) / n * 1000:.1f} ms"
    )
