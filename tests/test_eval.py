"""Evaluation runs, reports, the HTML view, ToolComp-style metrics and the LLM judge (toy env, no model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from agentq.envs.toy import ToyEnv, ToyOracleScorer
from typer.testing import CliRunner

from agentq.cli import app
from agentq.collect import collect
from agentq.errors import UserInputError
from agentq.eval import report as rep
from agentq.eval import toolcomp as tc
from agentq.eval.runner import (
    TRAJECTORIES_FILE,
    Method,
    build_methods,
    load_trajectories,
    run_episode,
    run_eval,
)
from agentq.eval.view import render_html, write_html
from agentq.models.judge import LLMJudgeScorer, parse_grade, scorer_from_spec
from agentq.policies import RandomProposer
from agentq.protocols import BaseProposer, BaseScorer
from agentq.search.mcts import MCTSConfig
from agentq.types import Candidate

TARA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tara"


def det_env() -> ToyEnv:
    return ToyEnv(variant="deterministic")


def run_toy(methods, tmp_path=None, n_tasks=20, resume=False, proposer=None, seed=0):
    env = det_env()
    ids = env.tasks("test")[:n_tasks]
    return run_eval(
        det_env,
        ids,
        methods,
        proposer or RandomProposer(seed=0),
        scorers={"toy-oracle": ToyOracleScorer(variant="deterministic")},
        out_dir=tmp_path,
        resume=resume,
        max_steps=5,
        seed=seed,
        progress=False,
    )


# -- methods ------------------------------------------------------------------------------------


def test_build_methods_expands_n_and_scorers():
    ms = build_methods(
        ["greedy", "sample", "best-of-n", "random", "majority"],
        [2, 5],
        ["qmodel:a", "judge:smollm2"],
    )
    names = [m.name for m in ms]
    assert names == [
        "greedy",
        "sample",
        "bon-qmodel@2",
        "bon-qmodel@5",
        "bon-judge@2",
        "bon-judge@5",
        "random@2",
        "random@5",
        "majority@2",
        "majority@5",
    ]
    same_prefix = build_methods(["best-of-n"], [4], ["qmodel:a", "qmodel:b"])
    assert len({m.name for m in same_prefix}) == 2
    with pytest.raises(UserInputError):
        build_methods(["best-of-n"], [4], [])
    with pytest.raises(UserInputError):
        build_methods(["beam"], [4], [])


# -- runs ---------------------------------------------------------------------------------------


def test_oracle_best_of_n_beats_the_sampling_baselines():
    methods = build_methods(["greedy", "best-of-n", "random", "majority"], [5], ["toy-oracle"])
    res = run_toy(methods)
    succ = {m: sum(t.success for t in ts) / len(ts) for m, ts in res.trajectories.items()}
    # deterministic corridor, 3 rooms of 3 doors: random picks succeed with p = 1/27,
    # oracle best-of-5 whenever the good door is among the samples: (1 - (2/3)^5)^3 = 0.66
    assert succ["bon-toy-oracle@5"] >= 0.5
    assert succ["random@5"] <= 0.2
    assert succ["bon-toy-oracle@5"] > succ["majority@5"] + 0.3
    t = res.trajectories["bon-toy-oracle@5"][0]
    assert (
        t.steps
        and t.steps[0].candidates
        and len(t.steps[0].scores or []) == len(t.steps[0].candidates)
    )
    assert t.model_calls >= len(t.steps)  # proposer calls, plus scorer calls when candidates differ


def test_same_tasks_same_seeds_give_identical_trajectories():
    methods = build_methods(["greedy", "sample"], [1], [])
    a = run_toy(methods, n_tasks=8)
    b = run_toy(methods, n_tasks=8)
    # greedy and sample share the proposer here: same per-task seed -> same actions
    acts = lambda ts: [[s.action for s in t.steps] for t in ts]  # noqa: E731
    assert acts(a.trajectories["greedy"]) == acts(a.trajectories["sample"])
    assert acts(a.trajectories["greedy"]) == acts(b.trajectories["greedy"])
    c = run_toy(methods, n_tasks=8, seed=1)
    assert acts(c.trajectories["greedy"]) != acts(a.trajectories["greedy"])


class CountingProposer(RandomProposer):
    calls = 0

    def propose(self, context, n, *, valid_actions=None):
        CountingProposer.calls += 1
        return super().propose(context, n, valid_actions=valid_actions)


def test_resume_skips_finished_episodes_and_matches_a_full_run(tmp_path):
    methods = build_methods(["greedy", "best-of-n"], [3], ["toy-oracle"])
    full = run_toy(methods, tmp_path / "full", n_tasks=6)
    path = tmp_path / "full" / TRAJECTORIES_FILE
    lines = path.read_text().splitlines()
    part_dir = tmp_path / "part"
    part_dir.mkdir()
    # an interrupted run: 4 episodes written, then a torn line
    (part_dir / TRAJECTORIES_FILE).write_text("\n".join(lines[:4]) + "\n" + lines[4][:40])
    CountingProposer.calls = 0
    res = run_toy(methods, part_dir, n_tasks=6, resume=True, proposer=CountingProposer(seed=0))
    assert res.skipped == 4
    assert CountingProposer.calls > 0
    got = load_trajectories(part_dir / TRAJECTORIES_FILE)
    assert len(got) == 12
    for m in methods:
        for a, b in zip(full.trajectories[m.name], res.trajectories[m.name], strict=True):
            assert [s.action for s in a.steps] == [s.action for s in b.steps]
            assert a.reward == b.reward
    # everything done: a third run proposes nothing
    CountingProposer.calls = 0
    again = run_toy(methods, part_dir, n_tasks=6, resume=True, proposer=CountingProposer(seed=0))
    assert again.skipped == 12 and CountingProposer.calls == 0


class Exploding(BaseProposer):
    def propose(self, context, n, *, valid_actions=None):
        raise RuntimeError("model fell over")


def test_a_failing_model_fails_the_episode_not_the_run():
    t = run_episode(det_env(), "toy-test-0", Method("greedy", "greedy"), Exploding(), max_steps=3)
    assert t.error and "model fell over" in t.error and not t.success and t.steps == []


class BadScorer(BaseScorer):
    def score(self, context, actions):
        return [0.0]  # wrong length


def test_scorer_returning_wrong_length_is_an_episode_error():
    env = det_env()
    t = run_episode(
        env,
        "toy-test-1",
        Method("bon@5", "best-of-n", 5, "x"),
        RandomProposer(seed=0),
        scorer=BadScorer(),
        max_steps=3,
    )
    assert t.error and "scores" in t.error


# -- reports ------------------------------------------------------------------------------------


def test_bootstrap_ci():
    assert rep.bootstrap_ci([1, 1, 1]) == (1.0, 1.0)
    lo, hi = rep.bootstrap_ci([0, 1] * 50)
    assert lo < 0.5 < hi and 0.35 < lo and hi < 0.65
    assert all(math.isnan(x) for x in rep.bootstrap_ci([]))


def test_write_report_files_and_table(tmp_path):
    methods = build_methods(["greedy", "best-of-n", "random"], [2, 4], ["toy-oracle"])
    res = run_toy(methods, tmp_path, n_tasks=10)
    r = rep.write_report(
        tmp_path,
        res,
        {"env": "toy", "split": "test", "policy": "random", "seed": 0, "max_steps": 5},
        command="agentq eval --env toy",
    )
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["command"] == "agentq eval --env toy"
    assert "python" in data["versions"] and "agentq" in data["versions"]
    assert set(data["methods"]) == {m.name for m in methods}
    g = data["methods"]["bon-toy-oracle@4"]
    assert g["success"]["ci95"][0] <= g["success"]["mean"] <= g["success"]["ci95"][1]
    assert "vs_reference" in g and data["reference"] == "greedy"
    md = (tmp_path / "report.md").read_text()
    assert "| bon-toy-oracle@4 | 4 |" in md and "agentq eval --env toy" in md
    png = (tmp_path / "success.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert r["methods"]["greedy"]["episodes"] == 10


def test_report_has_prefix_cache_use_per_method_and_run(tmp_path):
    """A local policy and a Q-model on its base (tiny, offline): report.json holds each
    method's and the run's hit rate, tokens reused, cache bytes and peak bytes (from the
    models' stats()), run.json the run's, report.md one line; a run of models without stats
    has none."""
    from agentq.eval.config import EvalConfig
    from agentq.eval.runner import run_evaluation
    from agentq.models.prefix_cache import shared_prefix_cache
    from agentq.models.tiny import save_tiny_model, save_tiny_qmodel

    base = save_tiny_model(tmp_path / "base")
    q = save_tiny_qmodel(tmp_path / "q", base)
    out = tmp_path / "rep"
    run_evaluation(
        EvalConfig(
            env="toy",
            policy=str(base),
            methods=["greedy", "best-of-n"],
            scorers=[f"qmodel:{q}"],
            n=[3],
            tasks=2,
            max_steps=3,
            policy_options={"device": "cpu", "max_new_tokens": 4},
            out=out,
            view=False,
            progress=False,
        )
    )
    data = json.loads((out / "report.json").read_text())
    run = data["cache"]
    assert run["lookups"] > 0 and 0 < run["hits"] <= run["lookups"]
    assert run["hit_rate"] == run["hits"] / run["lookups"]
    assert run["tokens_reused"] > 0 and run["tokens_computed"] > 0
    assert 0 < run["bytes"] <= run["peak_bytes"] <= run["budget_bytes"]
    assert run["budget_bytes"] == shared_prefix_cache().max_bytes
    # one process-wide cache, shared by the policy and the Q-model: counted once
    assert run["caches"] == 1 and run["models"] == 3  # sampler, greedy twin, Q-model
    per = {k: r["cache"] for k, r in data["methods"].items()}
    assert set(per) == {"greedy", "bon-qmodel@3"}
    for d in per.values():  # growing contexts: each step reuses the last one's prefix
        assert d["lookups"] > 0 and d["hits"] > 0 and d["tokens_reused"] > 0
    # the methods ran one after the other: their counters add up to the run's
    for k in ("lookups", "hits", "tokens_reused", "tokens_computed", "candidate_tokens"):
        assert sum(d[k] for d in per.values()) == run[k], k
    assert per["bon-qmodel@3"]["candidate_tokens"] > per["greedy"]["candidate_tokens"] > 0
    assert json.loads((out / "run.json").read_text())["cache"] == run
    md = (out / "report.md").read_text()
    assert "Prefix cache: hit rate" in md and "Per method: greedy" in md

    methods = build_methods(["greedy", "best-of-n"], [2], ["toy-oracle"])
    res = run_toy(methods, n_tasks=3)  # the random policy and the oracle have no stats()
    assert res.cache is None and set(res.cache_by_method.values()) == {None}
    r = rep.write_report(tmp_path / "plain", res, {"env": "toy"}, command="x", plot=False)
    assert r["cache"] is None and r["methods"]["greedy"]["cache"] is None
    assert "Prefix cache" not in (tmp_path / "plain" / "report.md").read_text()


def test_cache_usage_snapshot_and_difference():
    from agentq.eval import usage

    class Model:
        def __init__(self, cache: dict) -> None:
            self.n, self.cache = 0, cache

        def stats(self) -> dict:
            return {
                "lookups": self.n,
                "hits": self.n - 1,
                "tokens_reused": 10 * self.n,
                "tokens_computed": 5,
                "cache": dict(self.cache),
            }

    class Broken:
        def stats(self) -> dict:
            raise RuntimeError("no")

    shared = {"bytes": 100, "peak_bytes": 150, "budget_bytes": 1000}
    a, b = Model(shared), Model(shared)
    a.n = b.n = 1
    assert usage.snapshot([None, Broken(), object()]) is None
    before = usage.snapshot([a, b, a, Broken()])
    assert before is not None and before["models"] == 2 and before["caches"] == 1
    assert before["bytes"] == 100 and before["lookups"] == 2
    a.n = 3
    d = usage.difference(before, usage.snapshot([a, b]))
    assert (d["lookups"], d["hits"], d["misses"], d["tokens_reused"]) == (2, 2, 0, 20)
    assert d["hit_rate"] == 1.0 and d["reuse_rate"] == 1.0 and d["peak_bytes"] == 150
    assert usage.difference(None, None) == {}
    line = usage.summary_line(d, {"m": d, "other": None})
    assert "hit rate 100.0%" in line and "Per method: m 100%" in line
    assert usage.summary_line(None) == ""


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_eval_resume_and_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "rep"
    args = [
        "eval",
        "--env",
        "toy",
        "--split",
        "test",
        "--policy",
        "random",
        "--scorer",
        "toy-oracle",
        "--n",
        "3",
        "--tasks",
        "5",
        "--out",
        str(out),
        "--no-progress",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "bon-toy-oracle@3" in r.output
    for f in ("report.json", "report.md", "success.png", TRAJECTORIES_FILE, "trajectories.html"):
        assert (out / f).exists(), f
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 2 and "--resume" in r2.output
    r3 = runner.invoke(app, [*args, "--resume"])
    assert r3.exit_code == 0, r3.output
    assert json.loads((out / "report.json").read_text())["resumed_episodes"] == 5 * 5
    r4 = runner.invoke(app, [*args[:-1], "--resume", "--seed", "3"])
    assert r4.exit_code == 2 and "seed" in r4.output
    r5 = runner.invoke(app, ["eval", "--env", "nope", "--out", str(tmp_path / "x")])
    assert r5.exit_code == 2 and "unknown environment" in r5.output


# -- view ---------------------------------------------------------------------------------------


def test_view_of_trees_and_trajectories(tmp_path):
    trees = tmp_path / "trees.jsonl"
    collect(
        det_env,
        det_env().tasks("train")[:3],
        RandomProposer(seed=0),
        MCTSConfig(iterations=12, n=3, rollout="random"),
        trees,
    )
    page = render_html(trees)
    assert page.count('<section class="task">') == 3
    assert 'class="best"' in page and 'id="q"' in page and "toy-train-2" in page
    assert "https://" not in page and "<script src" not in page and "<link" not in page
    methods = build_methods(["greedy", "best-of-n"], [3], ["toy-oracle"])
    run_toy(methods, tmp_path / "r", n_tasks=2)
    out = write_html(tmp_path / "r" / TRAJECTORIES_FILE, tmp_path / "t.html")
    html = out.read_text()
    assert "bon-toy-oracle@3" in html and 'class="chosen"' in html and "toy-test-1" in html
    r = CliRunner().invoke(app, ["view", str(trees), "--out", str(tmp_path / "v.html")])
    assert r.exit_code == 0 and (tmp_path / "v.html").exists()
    (tmp_path / "bad.jsonl").write_text('{"x": 1}\n')
    r = CliRunner().invoke(app, ["view", str(tmp_path / "bad.jsonl")])
    assert r.exit_code == 2


def test_view_escapes_html(tmp_path):
    p = tmp_path / "t.jsonl"
    traj = {
        "method": "greedy",
        "task_id": "<b>x</b>",
        "context": [{"role": "user", "content": "</script><script>alert(1)</script>"}],
        "steps": [
            {
                "action": "<img src=x onerror=alert(1)>",
                "observation": "o",
                "reward": 0,
                "done": True,
            }
        ],
    }
    p.write_text(json.dumps(traj) + "\n")
    html = render_html(p)
    assert "<img src=x" not in html and "&lt;img src=x" in html and "alert(1)</script>" not in html


# -- ToolComp-style metrics -------------------------------------------------------------------------


def test_final_answer_accuracy_deterministic_grader():
    recs = [
        {"prompt": "q1", "answer": "42", "prediction": "41"},  # within 10%
        {"prompt": "q2", "answer": "100", "prediction": "80"},  # not
        {"prompt": "q3", "answer": "Paris", "prediction": "paris."},
        {"prompt": "q4", "answer": ["a", "b"], "prediction": "b, a"},
    ]
    res = tc.evaluate_records(recs)
    assert res["kind"] == "final_answer" and res["n"] == 4
    assert res["accuracy"] == pytest.approx(0.75)


class KeywordScorer(BaseScorer):
    """Scores text containing GOOD high and BAD low."""

    def score(self, context, actions):
        return [1.0 if "GOOD" in a else (-1.0 if "BAD" in a else 0.0) for a in actions]


def test_rank_at_1_outcome_and_step_aggregations():
    recs = [
        {
            "prompt": "p",
            "answer": "1",
            "trajectories": [
                {"final_answer": "2", "outcome_score": 0.9, "step_scores": [0.9, 0.1]},
                {"final_answer": "1", "outcome_score": 0.2, "step_scores": [0.5, 0.6]},
            ],
        },
        {
            "prompt": "p2",
            "answer": "x",
            "trajectories": [
                {"final_answer": "x", "outcome_score": 0.8, "step_scores": [0.2, 0.9]},
                {"final_answer": "y", "outcome_score": 0.1, "step_scores": [0.3, 0.3]},
            ],
        },
    ]
    r = tc.rank_at_1(recs)
    assert r["rank@1/outcome"] == 0.5
    assert r["rank@1/step-min"] == 0.5  # 0.1 vs 0.5 -> right; 0.2 vs 0.3 -> wrong
    assert r["rank@1/step-last"] == 1.0
    assert r["rank@1/step-mean"] == 1.0  # 0.5 vs 0.55 -> right; 0.55 vs 0.3 -> right
    assert r["oracle"] == 1.0 and r["random"] == 0.5
    # scores computed by a Scorer when the file has none
    recs2 = [
        {
            "prompt": "p",
            "answer": "1",
            "trajectories": [
                {"final_answer": "1", "steps": [{"action": "GOOD step", "observation": "ok"}]},
                {"final_answer": "3", "steps": [{"action": "BAD step", "observation": "ok"}]},
            ],
        }
    ]
    r2 = tc.rank_at_1(recs2, scorer=KeywordScorer())
    assert r2["rank@1/outcome"] == 1.0 and r2["rank@1/step-min"] == 1.0


def test_process_pairs_and_processbench_f1():
    def row(good: str, bad: str) -> dict:
        step = lambda t: {"thought": {"text": t}, "action": {"text": "calc"}}  # noqa: E731
        plan = {"action plan": {"text": "1. compute"}}
        return {
            "prompt": "task",
            "history": json.dumps([plan]),
            "preferred": step(good),
            "dispreferred": step(bad),
        }

    pairs = [row("GOOD", "BAD"), row("GOOD", "meh"), row("BAD", "GOOD")]
    res = tc.evaluate_records(pairs, scorer=KeywordScorer())
    assert (
        res["kind"] == "process_pairs" and res["n"] == 3 and res["accuracy"] == pytest.approx(2 / 3)
    )
    pb = [
        {"problem": "a", "steps": ["GOOD", "BAD", "GOOD"], "label": 1},  # predicted 1: right
        {"problem": "b", "steps": ["GOOD", "GOOD", "BAD"], "label": 1},  # predicted 2: wrong
        {"problem": "c", "steps": ["GOOD", "GOOD"], "label": -1},  # predicted -1: right
        {"problem": "d", "steps": ["BAD", "GOOD"], "label": -1},  # predicted 0: wrong
    ]
    f = tc.evaluate_records(pb, scorer=KeywordScorer(), threshold=0.0)
    assert f["acc_erroneous"] == 0.5 and f["acc_correct"] == 0.5 and f["f1"] == pytest.approx(0.5)
    pb2 = [
        {"problem": "a", "steps": ["s1", "s2"], "label": 0, "step_scores": [-1.0, 1.0]},
        {"problem": "b", "steps": ["s1"], "label": -1, "step_scores": [1.0]},
    ]
    assert tc.processbench_f1(pb2)["f1"] == 1.0
    with pytest.raises(UserInputError):
        tc.evaluate_records([{"foo": 1}])


def test_eval_toolcomp_cli(tmp_path):
    p = tmp_path / "fa.jsonl"
    p.write_text(
        "\n".join(
            json.dumps({"prompt": "q", "answer": "10", "prediction": x}) for x in ("10.5", "20")
        )
    )
    r = CliRunner().invoke(app, ["eval-toolcomp", str(p), "--out", str(tmp_path / "o.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o.json").read_text())["accuracy"] == 0.5


@pytest.mark.skipif(not TARA_DIR.is_dir(), reason="shared TARA data not present")
def test_eval_pairs_on_tara_files():
    res = tc.eval_pairs_files([TARA_DIR], "random", limit=20)
    assert set(res["files"]) == {"calculator", "calendar", "weather", "multi_tools", "wikisearch"}
    assert all(r["n"] == 20 for r in res["files"].values())
    res2 = tc.eval_pairs_files(
        [TARA_DIR / "agent_calendar_test.json"], "x", scorer_obj=KeywordScorer()
    )
    assert res2["files"]["calendar"]["n"] == 106
    assert "| calendar | 106 |" in tc.pairs_table(res2)


# -- the LLM judge --------------------------------------------------------------------------------


class FakeJudgeModel(BaseProposer):
    """Answers 9 when the candidate in the judge prompt opens the door the task favours, else 2."""

    def __init__(self, good: str) -> None:
        self.good = good
        self.seen_valid = None

    def propose(self, context, n, *, valid_actions=None):
        self.seen_valid = valid_actions
        cand = context[-1]["content"].split("Candidate next action:\n", 1)[1]
        return [Candidate("9" if self.good in cand else "grade: 2")] * n


def test_llm_judge_scorer_grades_and_drives_best_of_n():
    judge = LLMJudgeScorer(FakeJudgeModel("open[B]"), samples=2)
    ctx = [{"role": "user", "content": "Task toy. Doors: A, B, C."}]
    assert judge.score(ctx, ["open[A]", "open[B]"]) == [2.0, 9.0]
    assert judge.proposer.seen_valid == [str(i) for i in range(1, 11)]
    assert parse_grade("Grade: 14", 10) == 10.0 and parse_grade("none", 10) is None
    t = run_episode(
        det_env(),
        "toy-test-0",
        Method("bon-judge@5", "best-of-n", 5, "judge"),
        RandomProposer(seed=1),
        scorer=judge,
        max_steps=5,
    )
    chosen = [s.action for s in t.steps if s.candidates and "open[B]" in s.candidates]
    assert chosen and all(a == "open[B]" for a in chosen)


def test_judge_spec_builds_from_a_model_spec():
    s = scorer_from_spec("random", samples=3)
    assert isinstance(s, LLMJudgeScorer) and s.samples == 3 and s.spec == "judge:random"
    # the random policy has no valid grades to draw from without valid_actions: it draws grades
    scores = s.score([{"role": "user", "content": "x"}], ["a", "b"])
    assert all(1.0 <= x <= 10.0 for x in scores)


# -- the demo ---------------------------------------------------------------------------------------


def test_demo_refuses_tasks_the_qmodel_was_trained_on(tmp_path):
    from agentq.errors import AgentqError
    from agentq.eval.demo import check_held_out, read_provenance

    check_held_out({"collect": {"train_tasks": ["150", "151"]}}, ["0", "1"])
    with pytest.raises(AgentqError, match="trained on 1"):
        check_held_out({"collect": {"train_tasks": ["150", "1"]}}, ["0", "1"])
    assert read_provenance(tmp_path) == {}
    r = CliRunner().invoke(app, ["demo", "--qmodel", str(tmp_path), "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "no Q-value model" in r.output


def test_shipped_qmodel_is_held_out_from_the_demo_tasks():
    from agentq.envs.webshop import WebShopEnv

    from agentq.eval.demo import ASSET_QMODEL, DEMO_TASKS, check_held_out, read_provenance

    if not (ASSET_QMODEL / "qmodel.json").is_file():
        pytest.skip("no shipped Q-model in this checkout")
    prov = read_provenance(ASSET_QMODEL)
    env = WebShopEnv()
    train = set(prov["collect"]["train_tasks"])
    assert train and train <= set(env.tasks("train"))
    check_held_out(prov, env.tasks("test")[:DEMO_TASKS])
    size = sum(p.stat().st_size for p in ASSET_QMODEL.iterdir())
    assert size < 5_000_000


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path):
    from agentq.eval.demo import ASSET_QMODEL, run_demo

    if not (ASSET_QMODEL / "qmodel.json").is_file():
        pytest.skip("no shipped Q-model in this checkout")
    rep = run_demo(tmp_path / "demo", tasks=1, n=2, max_steps=2, progress=False)
    assert set(rep["methods"]) == {"greedy", "random@2", "bon-qmodel@2"}
    for f in ("report.md", "report.json", "success.png", "trajectories.jsonl", "trajectories.html"):
        assert (tmp_path / "demo" / f).exists()


def test_demo_code_path_with_tiny_models(tmp_path):
    """The demo's whole path (WebShop test tasks, policy, Q-model, report, view) on tiny models."""
    from agentq.eval.demo import run_demo
    from agentq.models.tiny import save_tiny_model, save_tiny_qmodel

    base = save_tiny_model(tmp_path / "base")
    q = save_tiny_qmodel(tmp_path / "q", base)
    rep = run_demo(
        tmp_path / "demo", tasks=1, n=3, max_steps=2, qmodel=q, policy=str(base), progress=False
    )
    assert set(rep["methods"]) == {"greedy", "random@3", "bon-qmodel@3"}
    # the Q row is compared with random choice among the same 3 samples, paired by task
    assert rep["methods"]["bon-qmodel@3"]["vs_random"]["method"] == "random@3"
    assert "Δ success vs random@N" in rep["table"]
    assert rep["config"]["demo"] and rep["tasks"] == ["0"]
    assert "agentq demo" in rep["command"] and "--qmodel" in rep["command"]
    trajs = load_trajectories(tmp_path / "demo" / TRAJECTORIES_FILE)
    assert len(trajs) == 3 and all(t.error is None for t in trajs.values())
    assert (tmp_path / "demo" / "trajectories.html").exists()


# -- reproducible regardless of order ---------------------------------------------------------


def _episodes(out: Path) -> dict[tuple[str, str], dict]:
    """(method, task) -> the trajectory record, without timings and token counts (a shared
    prefix cache makes later methods compute fewer tokens; the samples must not change)."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("wall_s", "tokens")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    recs = [json.loads(ln) for ln in (out / TRAJECTORIES_FILE).read_text().splitlines()]
    got = {(r["method"], r["task_id"]): strip(r) for r in recs}
    assert len(got) == len(recs)
    return got


def _order_and_resume_agree(tmp_path: Path, config) -> dict[tuple[str, str], dict]:
    """Run ``config``'s methods in their order, reversed, and reversed again resumed from an
    arbitrary half of the first run's episodes: every (method, task) trajectory is the same."""
    from dataclasses import replace

    from agentq.eval.runner import run_evaluation

    forward = replace(config, out=tmp_path / "forward")
    run_evaluation(forward)
    want = _episodes(forward.out)
    assert len(want) == len(config.methods) * config.tasks
    backward = replace(config, out=tmp_path / "backward", methods=config.methods[::-1])
    run_evaluation(backward)
    assert _episodes(backward.out) == want
    part = tmp_path / "resumed"
    part.mkdir()
    (part / "run.json").write_text((forward.out / "run.json").read_text())
    lines = (forward.out / TRAJECTORIES_FILE).read_text().splitlines()
    (part / TRAJECTORIES_FILE).write_text("\n".join(lines[1::2]) + "\n")  # every other episode
    run_evaluation(replace(backward, out=part, resume=True, concurrency=2))
    assert _episodes(part) == want
    return want


def test_samples_do_not_depend_on_method_order_or_resume_random_policy(tmp_path):
    from agentq.eval.config import EvalConfig

    config = EvalConfig(
        env="toy",
        methods=["greedy", "sample", "best-of-n", "random", "majority"],
        scorers=["random"],
        n=[3],
        tasks=4,
        max_steps=4,
        view=False,
        progress=False,
    )
    got = _order_and_resume_agree(tmp_path, config)
    # the methods sample differently on a task: the comparison is not vacuous
    assert len({json.dumps(r["steps"]) for r in got.values()}) > len(got) // 2


@pytest.mark.parametrize("constrained", [True, False], ids=["constrained", "free"])
def test_samples_do_not_depend_on_method_order_or_resume_local_model(tmp_path, constrained):
    """A local transformers policy (tiny, offline): each (method, task) draws from its own
    generator, so neither the methods run before it nor a resume change its samples."""
    from agentq.eval.config import EvalConfig
    from agentq.models.tiny import save_tiny_model

    base = save_tiny_model(tmp_path / "base")
    config = EvalConfig(
        env="toy",
        policy=str(base),
        methods=["sample", "random", "majority", "best-of-n"],
        scorers=["toy-oracle"],
        n=[3],
        tasks=3,
        max_steps=3,
        policy_options={
            "device": "cpu",
            "constrained": constrained,
            "max_new_tokens": 6,
            "prefix_cache": False,
        },
        view=False,
        progress=False,
    )
    got = _order_and_resume_agree(tmp_path, config)
    if constrained:  # free text from a random tiny model may be empty: an episode error, alike
        assert all(r["error"] is None for r in got.values())
    assert sum(len(r["steps"]) for r in got.values()) >= len(got)


# -- contracts as types; configuration once ---------------------------------------------------


def test_spec_resolution_returns_the_contracts():
    from agentq.eval.runner import build_policies
    from agentq.protocols import (
        Env,
        Proposer,
        Scorer,
        SeedableEnv,
        SnapshotEnv,
        StepLimitedEnv,
        as_scorer,
    )
    from agentq.specs import resolve_policy, resolve_scorer, takes_temperature

    p = resolve_policy("random", seed=3)
    assert isinstance(p, Proposer) and p.spec == "random"
    sampler, greedy = build_policies("random", seed=0, temperature=1.0)
    assert sampler is greedy and not takes_temperature("random")
    assert takes_temperature("smollm2") and takes_temperature("openai:http://h/v1#m")
    s = resolve_scorer("toy-oracle", variant="deterministic")
    assert isinstance(s, Scorer) and s.spec == "toy-oracle"
    ctx = ToyEnv(variant="deterministic").reset("toy-test-0")
    assert s.score_batch([(ctx, ["open[A]"])]) == [s.score(ctx, ["open[A]"])]
    s.reseed(1)  # every Scorer can be reseeded
    j = resolve_scorer("judge:random")
    assert isinstance(j, Scorer) and j.spec == "judge:random"
    assert as_scorer(s) is s
    env = det_env()
    assert isinstance(env, Env) and isinstance(env, SeedableEnv)
    assert isinstance(env, SnapshotEnv) and not isinstance(object(), StepLimitedEnv)


def test_eval_flags_are_the_config_fields():
    import typer

    from agentq.config import options
    from agentq.eval.config import EvalConfig

    cmd = typer.main.get_command(app).commands["eval"]
    params = {p.name: p for p in cmd.params}
    for o in options(EvalConfig):
        assert o.name in params, o.name
        assert params[o.name].help == o.help
    assert "config" in params and "--env-option" in params["env_option"].opts
    assert set(params) - {o.name for o in options(EvalConfig)} == {"config"}


@pytest.mark.parametrize(
    "command, cls_name",
    [
        ("view", "ViewConfig"),
        ("eval-pairs", "EvalPairsConfig"),
        ("eval-toolcomp", "EvalToolCompConfig"),
        ("demo", "DemoConfig"),
    ],
)
def test_eval_cli_command_flags_are_their_config_fields(command, cls_name):
    import typer

    import agentq.eval.cli as eval_cli
    from agentq.config import options

    cls = getattr(eval_cli, cls_name)
    params = {p.name: p for p in typer.main.get_command(app).commands[command].params}
    opts = [o for o in options(cls) if o.cli]
    assert set(params) == {o.name for o in opts} | {"config"}
    for o in opts:
        assert params[o.name].help == o.help, o.name
        assert o.argument or params[o.name].default == o.default, o.name


def test_eval_cli_command_configs_check_every_source_alike(tmp_path):
    from agentq.config import from_options
    from agentq.eval.cli import EvalPairsConfig, EvalToolCompConfig, ViewConfig

    for cls, bad, flag in (
        (ViewConfig, {"path": "t.jsonl", "max_chars": 0}, "--max-chars"),
        (EvalPairsConfig, {"files": "p.jsonl", "limit": -1}, "--limit"),
        (EvalToolCompConfig, {"path": "p.jsonl", "threshold": float("nan")}, "--threshold"),
    ):
        with pytest.raises(UserInputError, match=flag):
            from_options(cls, bad)
    c = from_options(EvalPairsConfig, {"files": ["a", "b"], "scorer_option": ["k=2"]})
    assert c.files == [Path("a"), Path("b")] and c.scorer_options == {"k": 2}
    trees = tmp_path / "t.jsonl"
    trees.write_text("")
    cfg = tmp_path / "v.toml"
    cfg.write_text("limit = -1\n")
    r = CliRunner().invoke(app, ["view", str(trees), "--config", str(cfg)])
    assert r.exit_code == 2 and r.stderr.strip() == "error: --limit must be >= 0, not -1"


def test_eval_config_checks_every_source_alike(tmp_path):
    from agentq.config import from_options
    from agentq.eval.config import EvalConfig

    for bad, flag in (
        ({"n": [0]}, "--n"),
        ({"tasks": -1}, "--tasks"),
        ({"max_steps": -2}, "--max-steps"),
    ):
        with pytest.raises(UserInputError, match=flag):
            EvalConfig(**bad)
    with pytest.raises(UserInputError, match="not both"):
        EvalConfig(resume=True, overwrite=True)
    with pytest.raises(UserInputError, match="--backend"):
        from_options(EvalConfig, {"backend": "spark"})
    with pytest.raises(UserInputError, match="unknown option"):
        from_options(EvalConfig, {"nn": 3})
    c = from_options(
        EvalConfig, {"n": 3, "methods": "greedy, random", "env_option": ["rooms=2"], "out": "r"}
    )
    assert c.n == [3] and c.methods == ["greedy", "random"] and c.env_options == {"rooms": 2}
    assert c.out == Path("r") and c.method_kinds == ["greedy", "random"]
    # the command line and a --config file give the same config
    cfg = tmp_path / "e.toml"
    cfg.write_text('n = 3\nmethods = "greedy,random"\nenv_option = ["rooms=2"]\ntasks = 5\n')
    out = tmp_path / "rep"
    r = CliRunner().invoke(
        app, ["eval", "--config", str(cfg), "--tasks", "2", "--out", str(out), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    data = json.loads((out / "report.json").read_text())
    assert set(data["methods"]) == {"greedy", "random@3"} and len(data["tasks"]) == 2
    assert data["config"]["env_options"] == {"rooms": 2}
    r = CliRunner().invoke(app, ["eval", "--config", str(cfg), "--n", "0", "--out", str(out)])
    assert r.exit_code == 2 and r.stderr.strip().startswith("error: --n must be >= 1")


def test_run_evaluation_keywords_are_a_config_shorthand(tmp_path):
    from agentq.eval.config import EvalConfig
    from agentq.eval.runner import run_evaluation

    common = {"tasks": 2, "max_steps": 3, "view": False, "progress": False}
    a = run_evaluation(env="toy", n=[2], methods=["greedy,random"], out=tmp_path / "a", **common)
    b = run_evaluation(
        EvalConfig(n=[2], methods=["greedy", "random"], out=tmp_path / "b", **common)
    )
    assert _episodes(tmp_path / "a") == _episodes(tmp_path / "b")
    assert a["config"] == b["config"]
    with pytest.raises(TypeError):
        run_evaluation(EvalConfig(), n=[2])


def test_cli_registers_every_command_directly():
    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in ("collect", "pairs", "train", "score", "train-rm", "serve", "eval", "view", "demo"):
        assert name in r.output
    assert "not implemented" not in r.output
