"""Collection over many tasks: resumable output, failures recorded, the CLI's errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agentq.envs.toy import ToyEnv
from typer.testing import CliRunner

from agentq.cli import app
from agentq.collect import acollect, collect
from agentq.data.trees import read_trees
from agentq.protocols import BaseProposer
from agentq.search.mcts import MCTSConfig
from agentq.types import Candidate

HERE = Path(__file__).parent


def lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().split("\n") if ln.strip()]


def test_sigkill_mid_run_then_resume_gives_each_tree_once(tmp_path):
    out, n_tasks = tmp_path / "trees.jsonl", 24
    cmd = [sys.executable, str(HERE / "slow_collect_script.py"), str(out), str(n_tasks)]
    proc = subprocess.Popen(cmd)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(lines(out)) < 4):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(lines(out))
    assert 4 <= done_before < n_tasks
    with open(out, "a") as f:  # what a kill in the middle of a write leaves behind
        f.write('{"task_id": "toy-train-9", "nodes": [{"id": 0, "par')
    subprocess.run(cmd, check=True)
    ids = [t.task_id for t in read_trees(out)]
    assert sorted(ids) == sorted(f"toy-train-{i}" for i in range(n_tasks))
    assert all(json.loads(ln) for ln in lines(out))  # no torn line left


class AllValid(BaseProposer):
    """Deterministic: the first n valid actions."""

    async def apropose(self, context, n, *, valid_actions=None):
        return [Candidate(a) for a in (valid_actions or [])[:n]]


def test_resumed_run_equals_one_uninterrupted_run(tmp_path):
    ids = ToyEnv().tasks("train")[:10]
    cfg = MCTSConfig(iterations=15, n=3, rollout="random", seed=3)
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    collect(ToyEnv, ids, AllValid(), cfg, whole, concurrency=4)
    collect(ToyEnv, ids[:4], AllValid(), cfg, part, concurrency=2)
    s = collect(ToyEnv, ids, AllValid(), cfg, part, resume=True, concurrency=3)
    assert s.skipped == 4 and s.tasks == 6
    # rollouts and the env's reward draws are seeded per task: the same trees, node for node,
    # whatever the concurrency and however the run was split
    a = {t.task_id: [n.to_dict() for n in t.nodes] for t in read_trees(whole)}
    b = {t.task_id: [n.to_dict() for n in t.nodes] for t in read_trees(part)}
    assert a == b and set(a) == set(ids)


def test_failed_task_is_recorded_and_run_goes_on(tmp_path):
    class FlakyProposer(BaseProposer):
        async def apropose(self, context, n, *, valid_actions=None):
            if "toy-train-2" in context[1]["content"]:
                raise ConnectionError("remote went away")
            return [Candidate(a) for a in (valid_actions or [])[:n]]

    out = tmp_path / "t.jsonl"
    s = asyncio.run(
        acollect(
            ToyEnv,
            ToyEnv().tasks("train")[:5],
            FlakyProposer(),
            MCTSConfig(iterations=5, n=3, rollout="none"),
            out,
            concurrency=3,
        )
    )
    assert (s.tasks, s.failed) == (5, 1)
    records = [json.loads(ln) for ln in lines(out)]
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["task_id"] for r in failed] == ["toy-train-2"]
    assert "remote went away" in failed[0]["error"]
    assert len(read_trees(out)) == 4 and len(read_trees(out, include_failed=True)) == 5


runner = CliRunner()


def run_cli(*args: str):
    return runner.invoke(app, list(args))


def test_cli_collect_pairs_end_to_end(tmp_path):
    trees, pairs = tmp_path / "trees.jsonl", tmp_path / "pairs.jsonl"
    r = run_cli(
        "collect",
        "--env",
        "toy",
        "--policy",
        "random",
        "--out",
        str(trees),
        "--tasks",
        "6",
        "--iterations",
        "20",
        "--n",
        "3",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    assert "tasks 6" in r.output and "mean best reward" in r.output
    r = run_cli("pairs", str(trees), "--out", str(pairs), "--scheme", "siblings")
    assert r.exit_code == 0, r.output
    assert len(lines(pairs)) > 0


def test_cli_config_file_and_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('tasks = 3\niterations = 5\nn = 2\nenv_option = ["variant=deterministic"]\n')
    out = tmp_path / "t.jsonl"
    r = run_cli("collect", "--config", str(cfg), "--out", str(out), "--tasks", "2", "--no-progress")
    assert r.exit_code == 0, r.output
    trees = read_trees(out)
    assert len(trees) == 2  # the flag beats the config file
    assert trees[0].config["iterations"] == 5


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "t.jsonl"
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("iterations = [")
    unknown_cfg = tmp_path / "unknown.toml"
    unknown_cfg.write_text("itterations = 3\n")
    cases = [
        ("collect", "--env", "nope", "--out", str(out)),
        ("collect", "--policy", "/no/such/model", "--out", str(out)),
        ("collect", "--config", str(bad_cfg), "--out", str(out)),
        ("collect", "--config", str(unknown_cfg), "--out", str(out)),
        ("collect", "--config", str(tmp_path / "missing.toml"), "--out", str(out)),
        ("collect", "--rollout", "sideways", "--out", str(out)),
        ("pairs", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "p.jsonl")),
        ("pairs", str(bad_cfg), "--out", str(tmp_path / "p.jsonl")),
    ]
    for args in cases:
        r = run_cli(*args)
        assert r.exit_code == 2, (args, r.output)
        err = r.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err, (args, err)
        assert not out.exists() and not (tmp_path / "p.jsonl").exists(), args
    out.write_text("")
    r = run_cli("collect", "--out", str(out))
    assert r.exit_code == 2 and "--resume" in r.stderr


def test_random_policy_trees_are_identical_whatever_concurrency_split_or_resume(tmp_path):
    from agentq.policies import RandomProposer

    ids = ToyEnv().tasks("train")[:12]
    cfg = MCTSConfig(iterations=12, n=3, rollout="policy", seed=7)

    def trees(path: Path) -> dict[str, list[dict]]:
        return {t.task_id: [n.to_dict() for n in t.nodes] for t in read_trees(path)}

    runs = {}
    for name, conc in (("c1", 1), ("c1-again", 1), ("c6", 6)):
        collect(
            ToyEnv, ids, RandomProposer(seed=7), cfg, tmp_path / f"{name}.jsonl", concurrency=conc
        )
        runs[name] = trees(tmp_path / f"{name}.jsonl")
    split = tmp_path / "split.jsonl"
    collect(ToyEnv, ids[5:9], RandomProposer(seed=7), cfg, split, concurrency=3)
    collect(ToyEnv, ids, RandomProposer(seed=7), cfg, split, resume=True, concurrency=4)
    runs["split+resume"] = trees(split)
    assert set(runs["c1"]) == set(ids)
    for name, got in runs.items():
        assert got == runs["c1"], name
    # and the seed matters
    collect(
        ToyEnv,
        ids[:3],
        RandomProposer(seed=8),
        MCTSConfig(**{**cfg.to_dict(), "seed": 8}),
        tmp_path / "s8.jsonl",
    )
    assert trees(tmp_path / "s8.jsonl") != {k: runs["c1"][k] for k in ids[:3]}


def test_collect_config_is_the_single_source_of_the_flags(tmp_path):
    import pytest
    import typer

    from agentq.collect import CollectConfig, run_collection
    from agentq.config import from_options, options
    from agentq.errors import UserInputError

    cfg = CollectConfig()
    m = cfg.mcts_config()
    assert (
        (m.iterations, m.n, m.max_depth, m.c)
        == (30, 5, 10, 1.41)
        == (
            MCTSConfig().iterations,
            MCTSConfig().n,
            MCTSConfig().max_depth,
            MCTSConfig().c,
        )
    )
    params = {p.name: p for p in typer.main.get_command(app).commands["collect"].params}
    assert set(params) == {o.name for o in options(CollectConfig)} | {"config"}
    assert params["iterations"].default == 30 and params["concurrency"].default == 16
    for bad, what in (
        ({"n": 0}, "n"),
        ({"c": float("nan")}, "c "),
        ({"tasks": -1}, "--tasks"),
        ({"retries": -1}, "--retries"),
        ({"rollout": "scorer"}, "--rollout-scorer"),
        ({"address": "auto"}, "--backend ray"),
    ):
        with pytest.raises(UserInputError, match=what):
            from_options(CollectConfig, bad)
    out = tmp_path / "t.jsonl"
    s = run_collection(
        CollectConfig(out=out, tasks=2, iterations=4, n=2, env_options={"rooms": 2}, progress=False)
    )
    assert s.tasks == 2 and len(read_trees(out)) == 2
