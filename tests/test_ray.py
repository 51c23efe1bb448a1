"""The Ray backend on a local 2-CPU Ray instance: same trees as the local backend, faults, resume."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from agentq.envs.toy import ToyEnv
from typer.testing import CliRunner

from agentq.cli import app
from agentq.collect import CollectWork, acollect, collect
from agentq.data.trees import read_trees
from agentq.protocols import BaseProposer
from agentq.search.mcts import MCTSConfig
from agentq.types import Candidate

ray = pytest.importorskip("ray")
from agentq.backends.ray import RayBackend, RayOptions  # noqa: E402

HERE = Path(__file__).parent
# the proposers below are defined in this test module, which Ray's workers cannot import:
# ship them by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

CFG = MCTSConfig(iterations=6, n=3, rollout="random", seed=5)
POISON = "toy-train-5"


class AllValid(BaseProposer):
    """Deterministic: the first n valid actions."""

    async def apropose(self, context, n, *, valid_actions=None):
        return [Candidate(a) for a in (valid_actions or [])[:n]]


class SlowAllValid(AllValid):
    """``AllValid`` after 50 ms (tasks stay in flight long enough to be killed)."""

    async def apropose(self, context, n, *, valid_actions=None):
        await asyncio.sleep(0.05)
        return await super().apropose(context, n, valid_actions=valid_actions)


class PoisonAllValid(SlowAllValid):
    """Kills its own worker process whenever it sees the task ``POISON``."""

    async def apropose(self, context, n, *, valid_actions=None):
        if any(POISON in str(m.get("content", "")) for m in context):
            os._exit(1)
        return await super().apropose(context, n, valid_actions=valid_actions)


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance with 2 CPUs for every test of this module."""
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ctx
    ray.shutdown()


def nodes_by_task(path: Path) -> dict[str, list[dict]]:
    return {t.task_id: [n.to_dict() for n in t.nodes] for t in read_trees(path)}


def task_counts(path: Path) -> Counter:
    return Counter(json.loads(ln)["task_id"] for ln in path.read_text().splitlines() if ln)


def ray_collect(out: Path, ids, proposer_cls, options: RayOptions, *, concurrency=2, **kw):
    work = CollectWork(ToyEnv, proposer_cls, CFG, models={"policy": proposer_cls.__name__})
    backend = RayBackend(work, options, concurrency=concurrency)
    backend.start()
    try:
        s = asyncio.run(
            acollect(None, ids, None, CFG, out, backend=backend, models=work.models, **kw)
        )
    finally:
        backend.close()
    return s, backend


def test_trees_equal_the_local_backend_node_for_node(ray_instance, tmp_path):
    ids = ToyEnv().tasks("train")[:8]
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    collect(ToyEnv, ids, AllValid(), CFG, local, concurrency=3)
    s, _ = ray_collect(remote, ids, AllValid, RayOptions(workers=2), concurrency=4)
    assert (s.tasks, s.failed) == (8, 0)
    assert task_counts(remote) == Counter(ids)
    assert nodes_by_task(remote) == nodes_by_task(local)
    t = read_trees(remote)[0]
    assert t.models == {"policy": "AllValid"} and t.config["seed"] == 5


def test_random_policy_on_the_stochastic_toy_trees_equal_local(ray_instance, tmp_path):
    """The ``random`` policy draws from each task's own generator (agentq.seeding): on the
    stochastic toy corridor, Ray workers at another concurrency grow the local backend's trees,
    node for node (sampled actions, rollouts and drawn rewards alike)."""
    common = ["collect", "--env", "toy", "--policy", "random", "--tasks", "8"]
    common += ["--iterations", "8", "--n", "2", "--rollout", "random", "--seed", "11"]
    common += ["--no-progress"]
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    r = runner.invoke(app, [*common, "--concurrency", "1", "--out", str(local)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [*common, "--backend", "ray", "--workers", "2", "--concurrency", "4"]
        + ["--out", str(remote)],
    )
    assert r.exit_code == 0, r.output
    want, got = nodes_by_task(local), nodes_by_task(remote)
    assert len(want) == 8 and task_counts(remote) == Counter(list(want))
    assert got == want
    # not vacuous: the policy's draws differ between tasks, and the rewards are drawn
    assert len({json.dumps([n["action"] for n in t]) for t in want.values()}) > 1
    assert ToyEnv().variant == "stochastic"


def test_killed_worker_reruns_its_task_and_a_task_that_keeps_killing_is_recorded(
    ray_instance, tmp_path
):
    ids = ToyEnv().tasks("train")[:10]
    assert POISON in ids
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    collect(ToyEnv, ids, AllValid(), CFG, local, concurrency=2)
    work = CollectWork(ToyEnv, PoisonAllValid, CFG, models={"policy": "poison"})
    backend = RayBackend(work, RayOptions(workers=2, retries=1), concurrency=2)
    backend.start()
    before = backend.worker_pids()
    killed: list[int] = []

    def kill_first_worker_once(tree) -> None:  # the other tasks of the run are in flight now
        if not killed:
            os.kill(before[0], signal.SIGKILL)
            killed.append(before[0])

    try:
        s = asyncio.run(
            acollect(
                None,
                ids,
                None,
                CFG,
                remote,
                backend=backend,
                models=work.models,
                on_tree=kill_first_worker_once,
            )
        )
        after = backend.worker_pids()
    finally:
        backend.close()
    assert killed and after[0] != before[0]  # Ray restarted the killed worker process
    assert task_counts(remote) == Counter(ids)  # every task exactly once: none lost, none doubled
    assert (s.tasks, s.failed) == (10, 1)
    failed = [t for t in read_trees(remote, include_failed=True) if t.status == "failed"]
    assert [t.task_id for t in failed] == [POISON]
    assert "Actor" in failed[0].error and failed[0].models == {"policy": "poison"}
    want = {k: v for k, v in nodes_by_task(local).items() if k != POISON}
    assert nodes_by_task(remote) == want  # the rerun tasks give the same trees


def test_driver_killed_with_sigkill_resumes(ray_instance, tmp_path):
    out, n_tasks = tmp_path / "trees.jsonl", 12
    address = ray_instance.address_info["gcs_address"]
    cmd = [sys.executable, str(HERE / "ray_collect_script.py"), str(out), str(n_tasks), address]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(task_counts(out)) < 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sum(task_counts(out).values())
    assert 2 <= done_before < n_tasks
    with open(out, "a") as f:  # what a kill in the middle of a write leaves behind
        f.write('{"task_id": "toy-train-11", "nodes": [{"id": 0, "par')
    ids = ToyEnv().tasks("train")[:n_tasks]
    s, _ = ray_collect(out, ids, AllValid, RayOptions(workers=2), resume=True)
    assert s.skipped == done_before and s.tasks == n_tasks - done_before
    assert task_counts(out) == Counter(ids)
    local = tmp_path / "local.jsonl"
    collect(ToyEnv, ids, AllValid(), CFG, local, concurrency=4)
    assert nodes_by_task(out) == nodes_by_task(local)


def test_eval_on_ray_equals_local(ray_instance, tmp_path):
    from agentq.eval.runner import run_evaluation

    common = dict(
        env="toy",
        methods=["greedy,best-of-n,random"],
        scorer=["toy-oracle"],
        n=[3],
        tasks=4,
        view=False,
        progress=False,
    )
    run_evaluation(out=tmp_path / "local", **common)
    run_evaluation(out=tmp_path / "ray", ray=RayOptions(workers=2), **common)

    def trajectories(d: Path) -> dict:
        out = {}
        for ln in (d / "trajectories.jsonl").read_text().splitlines():
            rec = json.loads(ln)
            rec.pop("wall_s")
            out[(rec["method"], rec["task_id"])] = rec
        return out

    a, b = trajectories(tmp_path / "local"), trajectories(tmp_path / "ray")
    assert len(a) == 12 and a == b


runner = CliRunner()


def test_cli_collect_on_ray(ray_instance, tmp_path):
    out = tmp_path / "t.jsonl"
    args = ["collect", "--backend", "ray", "--workers", "2", "--tasks", "4", "--iterations", "5"]
    r = runner.invoke(app, [*args, "--n", "2", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "tasks 4 (skipped 0, failed 0)" in r.output
    assert len(task_counts(out)) == 4


def test_cli_bad_input_is_one_line_exit_2_nothing_written(ray_instance, tmp_path, monkeypatch):
    out, rep = tmp_path / "t.jsonl", tmp_path / "report"
    cases = [
        ("collect", "--backend", "ray", "--address", "127.0.0.1:1", "--out", str(out)),
        ("collect", "--backend", "ray", "--address", "ray://127.0.0.1:1", "--out", str(out)),
        ("collect", "--backend", "ray", "--address", "no-port", "--out", str(out)),
        ("collect", "--backend", "spark", "--out", str(out)),
        ("collect", "--address", "auto", "--out", str(out)),
        ("collect", "--backend", "ray", "--workers", "-1", "--out", str(out)),
        ("collect", "--backend", "ray", "--worker-gpus", "1", "--out", str(out)),
        # a spec the workers cannot build: reported by the worker, before the output is opened
        ("collect", "--backend", "ray", "--workers", "1", "--rollout", "scorer")
        + ("--rollout-scorer", "nope", "--out", str(out)),
        ("eval", "--backend", "ray", "--address", "127.0.0.1:1", "--out", str(rep)),
    ]
    for args in cases:
        r = runner.invoke(app, list(args))
        assert r.exit_code == 2, (args, r.output)
        err = r.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err, (args, err)
        assert not out.exists() and not rep.exists(), args
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    for cmd, target in (("collect", out), ("eval", rep)):
        r = runner.invoke(app, [cmd, "--backend", "ray", "--out", str(target)])
        assert r.exit_code == 2, r.output
        assert r.stderr.strip().startswith("error: --backend ray needs Ray")
        assert "agentq[ray]" in r.stderr and "\n" not in r.stderr.strip()
        assert not target.exists()
