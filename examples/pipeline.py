#!/usr/bin/env python
"""The whole agentq pipeline on the shipped WebShop data: collect -> pairs -> train -> eval.

    python examples/pipeline.py --scale small --out runs/pipeline-small     # CPU, small
    python examples/pipeline.py --scale paper --out runs/pipeline-paper     # GPU, full scale

1. collect: MCTS over WebShop TRAIN tasks (``agentq collect``), one tree per task in trees.jsonl.
2. pairs:   step-level preference pairs from the trees (``agentq pairs``), pairs.jsonl.
3. train:   step-level DPO with LoRA on SmolLM2 (``agentq train``): the Q-value model directory.
4. eval:    SmolLM2 as the policy on held-out TEST tasks, greedy vs best-of-N with the trained
            Q-model vs random choice among N (``agentq eval``): report.md, success.png, HTML.

The collection policy at ``small`` scale is ``keywords``: uniform over the valid actions, with
search queries made of words of the instruction (WebShop's own random baseline; it needs no
model, so collection takes seconds on a CPU). At ``paper`` scale it is the agent's policy
itself (``smollm2``, or any MODEL spec via --collect-policy), as in the paper.

The Q-model shipped with agentq for ``agentq demo`` (agentq/eval/assets/qmodel_webshop) was
made by ``--scale small --stages collect,pairs,train --ship``; its provenance.json records
the command, the train task ids, and the figures of the run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agentq.data.pairs import decision_key
from agentq.models.step_dpo import LOSSES
from agentq.models.train import DEFAULT_TARGET_MODULES
from agentq.protocols import FREE_TEXT, BaseProposer
from agentq.types import Candidate, Context

SCALES: dict[str, dict[str, Any]] = {
    "small": {
        "collect_policy": "keywords",
        "collect_tasks": 0,
        "iterations": 1500,
        "c": 0.5,
        "n": 13,
        "distinct": True,
        "depth": 6,
        "rollout": "policy",
        "rollout_policy": "buy-now",
        "scheme": "siblings",
        "value": "max",
        "gamma": 0.95,
        "margin": 0.05,
        "val_fraction": 0.2,
        "max_decisions": 1000,
        "best_path_first": True,
        "max_val_pairs": 0,
        "max_val_decisions": 100,
        "beta": 0.1,
        "lr": 5e-4,
        "epochs": 1.0,
        "batch_size": 4,
        "max_length": 512,
        "lora_r": 8,
        "lora_alpha": 16,
        "target_modules": list(DEFAULT_TARGET_MODULES),
        "lora_layers": 8,
        "gradient_checkpointing": False,
        "eval_policy": "smollm2",
        "eval_tasks": 4,
        "eval_n": 5,
        "eval_max_steps": 10,
        "eval_temperature": 1.0,
        "env_options": {"instruction_search": True},
    },
    "paper": {
        "collect_policy": "smollm2",
        "collect_tasks": 0,
        "iterations": 30,
        "n": 5,
        "depth": 10,
        "rollout": "policy",
        "scheme": "best-path",
        "margin": 0.0,
        "val_fraction": 0.1,
        "max_decisions": 0,
        "max_val_pairs": 0,
        "beta": 0.1,
        "lr": 5e-5,
        "epochs": 3.0,
        "batch_size": 8,
        "max_length": 1024,
        "lora_r": 16,
        "lora_alpha": 32,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "lora_layers": 0,
        "gradient_checkpointing": True,
        "eval_policy": "smollm2",
        "eval_tasks": 0,
        "eval_n": 5,
        "eval_max_steps": 15,
        "eval_temperature": 0.7,
        "env_options": {},
    },
}

T = TypeVar("T")
_WORD_RE = re.compile(r"[a-z0-9][a-z0-9'-]*")
_STOP = {
    "i",
    "a",
    "an",
    "the",
    "and",
    "for",
    "me",
    "with",
    "of",
    "in",
    "to",
    "is",
    "it",
    "that",
    "need",
    "want",
    "looking",
    "find",
    "am",
    "my",
    "be",
    "which",
    "who",
    "can",
    "you",
}


def instruction_words(context: Context) -> list[str]:
    """Content words of the WebShop instruction in ``context`` (price clause removed)."""
    from agentq.envs.webshop.expert import expert_query

    for m in context:
        text = str(m.get("content", ""))
        if "Instruction:" in text:
            instr = text.split("Instruction:", 1)[1].split("\n", 1)[0]
            words = _WORD_RE.findall(expert_query(instr.strip()).lower())
            return [w for w in words if w not in _STOP] or words
    return []


class KeywordRandomProposer(BaseProposer):
    """Uniform over ``valid_actions``; ``search[...]`` gets 2-6 instruction words, in order.

    The model-free collection policy of the small scale (WebShop's random baseline). With
    ``distinct=True`` the ``n`` draws are distinct valid actions (uniform without replacement,
    all of them, repeated, when ``n`` covers the page), so an MCTS expansion tries every action once
    instead of a few repeated ones. Draws come from the task's own generator
    (:func:`agentq.seeding.task_rng`), so trees do not depend on task order or concurrency.
    """

    spec = "keywords"

    def __init__(self, seed: int = 0, distinct: bool = False) -> None:
        self._rng = random.Random(seed)
        self.distinct = distinct

    def propose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """``n`` uniform draws over the valid actions, free text filled from the instruction."""
        valid = list(valid_actions or [])
        if not valid:
            from agentq.errors import ProposerError

            raise ProposerError("the keywords policy needs valid_actions()")
        from agentq.seeding import task_rng

        rng = task_rng(self.spec, self._rng)
        words = instruction_words(context)
        if self.distinct and not any(FREE_TEXT in v for v in valid):
            picks = rng.sample(valid, min(n, len(valid)))
            return [Candidate(picks[i % len(picks)]) for i in range(n)]  # repeats merge
        out = []
        for _ in range(n):
            a = rng.choice(valid)
            if FREE_TEXT in a:
                k = min(len(words), rng.randint(2, 6))
                idx = sorted(rng.sample(range(len(words)), k)) if words else []
                a = a.replace(FREE_TEXT, " ".join(words[i] for i in idx) or "item")
            out.append(Candidate(a))
        return out


class BuyNowRollout(KeywordRandomProposer):
    """The small scale's rollout policy: ``click[buy now]`` whenever it is valid, else uniform.

    A simulation from a new leaf then values it by what buying there earns (on an item page:
    the product with the options picked so far; elsewhere: a random walk to the first buy).
    Uniform rollouts value an option click by a random walk that rarely buys afterwards, and
    the trees then teach "buy now" over the right option (measured on 40 train tasks: buy now
    preferred to a goal option in 96 of 96 pairs; with this rollout in 34 of 71). Opt in with
    ``"rollout": "policy", "rollout_policy": "buy-now"`` (and ``"value": "max"``); the small
    scale keeps uniform rollouts: a Q-model trained on the buy-now trees scored better on
    held-out pairs (0.76 against 0.66) but worse in the demo (reward 0.07 against 0.47: it
    picks options and no longer buys within the 6-step limit).
    """

    spec = "keywords+buy-now-rollout"

    def propose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """``click[buy now]`` n times when valid, else the keywords policy's draws."""
        if valid_actions and "click[buy now]" in valid_actions:
            return [Candidate("click[buy now]") for _ in range(n)]
        return super().propose(context, n, valid_actions=valid_actions)


def stage_collect(cfg: dict[str, Any], out: Path, seed: int) -> dict[str, Any]:
    """MCTS on the first ``collect_tasks`` TRAIN tasks -> trees.jsonl (resumable)."""
    from agentq.envs.webshop import WebShopEnv

    from agentq.collect import collect
    from agentq.search.mcts import MCTSConfig
    from agentq.specs import resolve_policy

    env_options = dict(cfg.get("env_options", {}))
    env = WebShopEnv(**env_options)
    tasks = env.tasks("train")
    if cfg["collect_tasks"]:
        tasks = tasks[: cfg["collect_tasks"]]
    if cfg["collect_policy"] == "keywords":
        proposer: Any = KeywordRandomProposer(seed, distinct=cfg.get("distinct", False))
    else:
        proposer = resolve_policy(cfg["collect_policy"], seed=seed)
    rollout_proposer = BuyNowRollout(seed) if cfg.get("rollout_policy") == "buy-now" else None
    mcts = MCTSConfig(
        iterations=cfg["iterations"],
        n=cfg["n"],
        max_depth=cfg["depth"],
        c=cfg.get("c", 1.41),
        rollout=cfg["rollout"],
        seed=seed,
    )
    trees = out / "trees.jsonl"
    t0 = time.perf_counter()
    s = collect(
        lambda: WebShopEnv(**env_options),
        tasks,
        proposer,
        mcts,
        trees,
        resume=trees.exists(),
        concurrency=4,
        rollout_proposer=rollout_proposer,
        models={
            "policy": cfg["collect_policy"],
            "rollout": cfg.get("rollout_policy") or cfg["rollout"],
        },
        progress=True,
    )
    wall = time.perf_counter() - t0
    print(
        f"collect: {s.tasks} tasks (skipped {s.skipped}), {s.nodes} nodes, mean best reward "
        f"{s.mean_best_reward:.3f}, {wall:.1f}s -> {trees}"
    )
    from agentq.data.trees import read_trees

    every = read_trees(trees)  # the whole file, also what earlier (resumed) runs wrote
    return {
        "tasks": list(tasks),
        "nodes": sum(len(t.nodes) for t in every),
        "mean_best_reward": sum(t.best_reward for t in every) / max(len(every), 1),
        "wall_s": round(wall, 1),
        "mcts": mcts.to_dict(),
        "policy": cfg["collect_policy"],
    }


def select_decisions(
    pairs: list[dict[str, Any]], max_decisions: int = 0, max_pairs: int = 0, seed: int = 0
) -> list[dict[str, Any]]:
    """Every pair of a spread of decisions (a decision = one task's context and its siblings).

    Decisions are ranked within a task by how reliable their Q estimates are (pairs whose two
    actions were both visited at least 3 times, then the largest Q gap), and taken round robin
    over the tasks in a seeded order, so a budget covers as many tasks as it can: first each
    task's results-page choice, then its most reliable item-page choices. Stops at
    ``max_decisions`` decisions or ``max_pairs`` pairs (0 = no limit).
    """
    by_task: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for p in pairs:
        key = decision_key(p["task_id"], p["prompt"])
        by_task.setdefault(str(p["task_id"]), {}).setdefault(key, []).append(p)

    def rank(ps: list[dict[str, Any]]) -> tuple[int, int, float]:
        reliable = sum(min(p["visits_chosen"], p["visits_rejected"]) >= 3 for p in ps)
        gap = max(p["q_chosen"] - p["q_rejected"] for p in ps)
        return (ps[0]["depth"] <= 1, reliable, gap)

    queues = {t: sorted(ds.values(), key=rank, reverse=True) for t, ds in by_task.items()}
    out: list[dict[str, Any]] = []
    for taken, decision in enumerate(round_robin(queues, seed)):
        if (max_decisions and taken >= max_decisions) or (max_pairs and len(out) >= max_pairs):
            break
        out.extend(decision)
    return out


def round_robin(queues: dict[str, list[T]], seed: int) -> Iterator[T]:
    """Each task's queue head in turn, the tasks in a seeded order, until all are empty (so a
    budget cut anywhere covers as many tasks as it can)."""
    order = sorted(queues)
    random.Random(seed).shuffle(order)
    heads = {t: iter(queues[t]) for t in order}
    while heads:
        for t in list(heads):
            item = next(heads[t], None)
            if item is None:
                del heads[t]
            else:
                yield item


def best_path_decisions(trees: list[Any]) -> set[str]:
    """Keys (task id + context) of the decisions on each tree's best path (:func:`best_leaf`).

    These are the decisions a successful episode has to get right in turn: the product, each
    goal option, then ``buy now``. Item pages deep in a tree are few, so a budget ranked by
    visit counts alone rarely reaches the second option or the final buy.
    """
    from agentq.data.pairs import best_leaf
    from agentq.render import context_along

    keys = set()
    for tree in trees:
        if tree.status != "ok" or not tree.nodes:
            continue
        path = tree.path(best_leaf(tree))
        for j in range(len(path)):  # the decision made at the parent of path[j]
            steps = [(n.action or "", n.observation or "") for n in path[:j]]
            ctx = context_along(tree.context, steps)
            keys.add(decision_key(tree.task_id, ctx))
    return keys


def go_on_decisions(pairs: list[dict[str, Any]], max_decisions: int, seed: int) -> set[str]:
    """Keys of up to ``max_decisions`` decisions where ``buy now`` loses (a ``go on`` pair of
    :func:`agentq.models.train.decision_type`: an option is still missing or the item is wrong),
    item pages with some options chosen and a kind still open first
    (:func:`agentq.envs.webshop.engine.read_item_options`), then more chosen, then deeper;
    :func:`round_robin` over the tasks.

    A Q-model that learned "buying is good" from the many pairs ``buy now`` wins loses exactly
    these decisions; the spread of :func:`select_decisions` holds few of them at depth.
    """
    from agentq.envs.webshop.engine import read_item_options

    from agentq.models.train import decision_type

    rank: dict[str, dict[str, tuple[bool, int, int]]] = {}
    for p in pairs:
        if decision_type(p) == "go on":
            kinds, chosen = read_item_options(str(p["prompt"][-1]["content"]))
            partly = 0 < len(chosen) < len(kinds)  # some options chosen, a kind still open
            key = decision_key(p["task_id"], p["prompt"])
            rank.setdefault(str(p["task_id"]), {})[key] = (partly, len(chosen), int(p["depth"]))
    queues = {t: sorted(ks, key=lambda k: (ks[k], k), reverse=True) for t, ks in rank.items()}
    return set(itertools.islice(round_robin(queues, seed), max_decisions))


def best_path_then_spread(
    pairs: list[dict[str, Any]],
    best: set[str],
    max_decisions: int,
    seed: int,
    go_on: int = 0,
) -> list[dict[str, Any]]:
    """Every pair of the best-path decisions (:func:`best_path_decisions`), then of up to
    ``go_on`` decisions where ``buy now`` loses (:func:`go_on_decisions`), then a spread of the
    other decisions (:func:`select_decisions`) up to ``max_decisions`` decisions in all."""
    keyed = [(decision_key(p["task_id"], p["prompt"]), p) for p in pairs]
    keys = sorted({k for k, _ in keyed if k in best})
    if max_decisions and len(keys) >= max_decisions:  # a seeded sample of the best-path ones
        keep = set(random.Random(seed).sample(keys, max_decisions))
        return [p for k, p in keyed if k in keep]
    if go_on:
        room = max_decisions - len(keys) if max_decisions else go_on
        extra = go_on_decisions([p for k, p in keyed if k not in best], min(go_on, room), seed)
        best = best | extra
        keys = sorted({k for k, _ in keyed if k in best})
    first = [p for k, p in keyed if k in best]
    rest = [p for k, p in keyed if k not in best]
    budget = max_decisions - len(keys) if max_decisions else 0
    if max_decisions and budget <= 0:
        return first
    return first + select_decisions(rest, max_decisions=budget, seed=seed)


def stage_pairs(cfg: dict[str, Any], out: Path, seed: int) -> dict[str, Any]:
    """Step-level pairs from trees.jsonl -> pairs.jsonl (a budget of decisions, see below).

    Training keeps every pair of up to ``max_decisions`` decisions of TRAIN-split tasks;
    validation up to ``max_val_pairs`` pairs of decisions of the held-out validation tasks
    (:func:`select_decisions` picks both). 0 keeps everything.
    """
    from agentq.data.pairs import build_pairs, write_pairs
    from agentq.data.trees import read_trees

    trees = read_trees(out / "trees.jsonl")
    pairs = build_pairs(
        trees,
        cfg["scheme"],
        margin=cfg["margin"],
        val_fraction=cfg["val_fraction"],
        seed=seed,
        value=cfg.get("value", "mean"),
        gamma=cfg.get("gamma", 1.0),
    )
    n_all = len(pairs)
    train = [p for p in pairs if p["split"] == "train"]
    val = [p for p in pairs if p["split"] == "validation"]
    if cfg.get("best_path_first"):
        best = best_path_decisions(trees)
        train = best_path_then_spread(
            train, best, cfg.get("max_decisions", 0), seed, go_on=cfg.get("go_on_decisions", 0)
        )
        val = best_path_then_spread(val, best, cfg.get("max_val_decisions", 0), seed)
    else:
        train = select_decisions(train, max_decisions=cfg.get("max_decisions", 0), seed=seed)
        val = select_decisions(
            val,
            max_decisions=cfg.get("max_val_decisions", 0),
            max_pairs=cfg.get("max_val_pairs", 0),
            seed=seed,
        )
    pairs = train + val
    n = write_pairs(out / "pairs.jsonl", pairs, overwrite=True)
    n_val = len(val)
    print(
        f"pairs: {n_all} built, {n} kept (train {n - n_val}, validation {n_val}) -> {out / 'pairs.jsonl'}"
    )
    return {
        "built": n_all,
        "kept": n,
        "train": n - n_val,
        "validation": n_val,
        "train_tasks": len({p["task_id"] for p in train}),
        "validation_tasks": len({p["task_id"] for p in val}),
        "scheme": cfg["scheme"],
        "value": cfg.get("value", "mean"),
        "gamma": cfg.get("gamma", 1.0),
        "margin": cfg["margin"],
    }


def stage_train(cfg: dict[str, Any], out: Path, seed: int) -> dict[str, Any]:
    """Step-level DPO with LoRA on SmolLM2 -> the Q-model directory."""
    from agentq.models.train import TrainConfig, train_qmodel

    tc = TrainConfig(
        beta=cfg["beta"],
        learning_rate=cfg["lr"],
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        max_length=cfg["max_length"],
        lora_r=cfg["lora_r"],
        lora_alpha=cfg["lora_alpha"],
        target_modules=tuple(cfg["target_modules"]),
        lora_layers=cfg.get("lora_layers", 0),
        gradient_checkpointing=cfg.get("gradient_checkpointing", False),
        loss=cfg.get("loss", "pairwise"),
        focal_gamma=cfg.get("focal_gamma", 0.0),
        reference_cache=cfg.get("reference_cache"),
        seed=seed,
    )
    t0 = time.perf_counter()
    res = train_qmodel(
        out / "pairs.jsonl", "smollm2", out / "qmodel", tc, overwrite=True, progress=True
    )
    wall = time.perf_counter() - t0
    print(f"train: {json.dumps(res.metrics)} ({wall:.1f}s) -> {out / 'qmodel'}")
    return {"metrics": res.metrics, "data": res.data, "wall_s": round(wall, 1)}


def validation_tasks(cfg: dict[str, Any], seed: int) -> list[str]:
    """The TRAIN-split tasks the pairs stage held out for validation (never trained on).

    Settings (step limit, pair values, ...) are chosen on these, never on test tasks.
    """
    from agentq.envs.webshop import WebShopEnv

    from agentq.data.pairs import split_of

    tasks = WebShopEnv(**dict(cfg.get("env_options", {}))).tasks("train")
    if cfg["collect_tasks"]:
        tasks = tasks[: cfg["collect_tasks"]]
    return [t for t in tasks if split_of(t, cfg["val_fraction"], seed) == "validation"]


def stage_eval(cfg: dict[str, Any], out: Path, seed: int) -> dict[str, Any]:
    """SmolLM2 on TEST tasks (or, with ``eval_split: validation``, on the held-out TRAIN tasks
    of :func:`validation_tasks`): greedy vs best-of-N (Q-model) vs random among N -> report/."""
    from agentq.eval.runner import run_evaluation

    tasks: int | list[str] = cfg["eval_tasks"]
    split = "test"
    if cfg.get("eval_split") == "validation":
        split = "train"
        tasks = validation_tasks(cfg, seed)[: cfg["eval_tasks"] or None]
    rep = run_evaluation(
        env="webshop",
        split=split,
        policy=cfg["eval_policy"],
        qmodel=str(out / "qmodel"),
        methods=[cfg.get("eval_methods", "greedy,best-of-n,random")],
        n=[cfg["eval_n"]],
        tasks=tasks,
        max_steps=cfg["eval_max_steps"],
        temperature=cfg["eval_temperature"],
        env_option=[f"{k}={json.dumps(v)}" for k, v in cfg.get("env_options", {}).items()],
        policy_option=[f"max_length={cfg['max_length']}"],
        seed=seed,
        out=out / ("report" if split == "test" else "report-validation"),
        overwrite=True,
        backend=cfg.get("eval_backend", "local"),
        workers=cfg.get("eval_workers", 0),
        command=shlex.join([sys.executable, *sys.argv]),
    )
    print(rep["table"])
    return {
        m: {"success": r["success"]["mean"], "reward": r["reward"]["mean"]}
        for m, r in rep["methods"].items()
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stages given on the command line."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", choices=sorted(SCALES), default="small")
    ap.add_argument("--out", type=Path, default=Path("runs/pipeline"))
    ap.add_argument("--stages", default="collect,pairs,train,eval")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--collect-policy", default=None, help="MODEL spec or 'keywords' (overrides the scale)."
    )
    ap.add_argument("--collect-tasks", type=int, default=None)
    ap.add_argument("--eval-tasks", type=int, default=None)
    ap.add_argument(
        "--eval-split",
        choices=["test", "validation"],
        default=None,
        help="test (default) or validation: the held-out TRAIN tasks, for choosing settings.",
    )
    ap.add_argument("--eval-methods", default=None, help="e.g. greedy,best-of-n,random")
    ap.add_argument("--eval-backend", choices=["local", "ray"], default=None)
    ap.add_argument("--eval-workers", type=int, default=None)
    ap.add_argument("--gamma", type=float, default=None, help="Pair value discount (pairs stage).")
    ap.add_argument(
        "--max-decisions", type=int, default=None, help="Pairs stage: train decisions kept."
    )
    ap.add_argument(
        "--go-on-decisions",
        type=int,
        default=None,
        help="Pairs stage: decisions where buy now loses, taken right after the best path.",
    )
    ap.add_argument("--loss", choices=list(LOSSES), default=None, help="Train stage's DPO loss.")
    ap.add_argument("--focal-gamma", type=float, default=None, help="Train stage's focal weight.")
    ap.add_argument(
        "--reference-cache", default=None, help="Reference log-probs file reused across runs."
    )
    ap.add_argument(
        "--ship",
        action="store_true",
        help="Copy the trained Q-model into agentq/eval/assets/qmodel_webshop (the demo's).",
    )
    args = ap.parse_args(argv)
    cfg = dict(SCALES[args.scale])
    for k in (
        "collect_policy",
        "collect_tasks",
        "eval_tasks",
        "eval_split",
        "eval_methods",
        "eval_backend",
        "eval_workers",
        "gamma",
        "max_decisions",
        "go_on_decisions",
        "loss",
        "focal_gamma",
        "reference_cache",
    ):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    args.out.mkdir(parents=True, exist_ok=True)
    prov_path = args.out / "provenance.json"
    prov: dict[str, Any] = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    command = shlex.join(
        ["python", "examples/pipeline.py", *(argv if argv is not None else sys.argv[1:])]
    )
    # every invocation that wrote into this run directory, in order (stages may run apart)
    commands = list(prov.get("commands") or ([prov["command"]] if "command" in prov else []))
    prov.update(
        {
            "command": command,
            "commands": [*commands, command],
            "scale": args.scale,
            "config": cfg,
            "seed": args.seed,
        }
    )
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    funcs = {
        "collect": stage_collect,
        "pairs": stage_pairs,
        "train": stage_train,
        "eval": stage_eval,
    }
    for st in stages:
        if st not in funcs:
            ap.error(f"unknown stage {st!r}")
        prov[st] = funcs[st](cfg, args.out, args.seed)
        prov_path.write_text(json.dumps(prov, indent=2) + "\n")
    if args.ship:
        dest = Path(__file__).resolve().parents[1] / "agentq" / "eval" / "assets" / "qmodel_webshop"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(
            args.out / "qmodel", dest, ignore=shutil.ignore_patterns("README.md", ".trainer")
        )
        (dest / "__init__.py").write_text(  # a package, so wheels ship the files
            '"""The Q-value model shipped for ``agentq demo``: LoRA adapter, qmodel.json, provenance.json."""\n'
        )
        ship = {
            k: prov[k]
            for k in ("command", "commands", "scale", "config", "seed", "pairs", "train")
            if k in prov
        }
        if "collect" in prov:
            ship["collect"] = {**prov["collect"], "train_tasks": prov["collect"]["tasks"]}
            ship["collect"].pop("tasks", None)
        (dest / "provenance.json").write_text(json.dumps(ship, indent=2) + "\n")
        print(f"shipped -> {dest}")


if __name__ == "__main__":
    main()
