"""``agentq demo``: the main job on the embedded defaults, offline, on a CPU.

SmolLM2-135M-Instruct (the ``smollm2`` MODEL spec) acts as the agent's policy on held-out TEST
tasks of the shipped WebShop data. Three methods run on the same tasks and seeds: greedy (N = 1,
temperature 0), random@N (a uniform choice among the same N samples: the control) and best-of-N, where N actions sampled from SmolLM2 are scored by a Q-value
model and the best is executed. The Q-value model ships with agentq
(``agentq/eval/assets/qmodel_webshop``): a LoRA adapter on SmolLM2 trained by agentq's own
pipeline (collect -> pairs -> train) on TRAIN tasks only; ``provenance.json`` next to it holds
the command that made it (``examples/pipeline.py``), its train task ids and its training
figures. The demo checks that none of the tasks it reports was a training task.

Output: the table on stdout, and in the report directory report.md, report.json,
success.png, trajectories.jsonl and trajectories.html (the offline tree viewer).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from agentq.errors import AgentqError, UserInputError

ASSET_QMODEL = Path(__file__).resolve().parent / "assets" / "qmodel_webshop"
"""The shipped Q-value model (LoRA adapter + qmodel.json + provenance.json)."""

DEMO_TASKS = 16
"""Held-out test tasks (the first ones of the shipped test split)."""
DEMO_N = 5
"""Candidates sampled per step for best-of-N."""
DEMO_MAX_STEPS = 10
"""Step limit per episode. The shortest successful episode is 5 steps (search, product, two
options, buy); the slack lets best-of-N pass a step whose N samples lack the action it needs
(SmolLM2's 5 samples hold the second goal option in about a quarter of the states, and `buy
now` once both are chosen in about a third)."""
DEMO_TEMPERATURE = 1.0
"""Sampling temperature of the N candidates: the policy's own distribution. The N candidates are
drawn without replacement (Gumbel-top-k over the valid actions), so they differ even where
SmolLM2-135M puts ~90% of its mass on ``click[next >]``. Greedy is unaffected (temperature 0)."""
DEMO_METHODS = "greedy,random,best-of-n"
"""Greedy, random choice among the N samples (the control) and best-of-N with the Q-model."""
DEMO_POLICY_OPTIONS = ("max_length=512",)
"""The policy sees at most 512 tokens, the Q-model's own budget: a longer context loses whole
middle turns (:func:`agentq.render.truncate_context`; the system prompt and the task stay, and
every WebShop page repeats the instruction). Each step then costs one short prefill instead of
the whole growing episode, for every method alike."""
DEMO_ENV_OPTIONS = ("instruction_search=true",)
"""WebShop options: the search page offers one search, for the instruction itself (SmolLM2-135M
copies the page's wording when asked to write a query), so the policy's choices are items and
options. The Q-model was collected and trained with the same option."""


def read_provenance(qmodel: Path) -> dict[str, Any]:
    """The Q-model's provenance.json (empty when it has none, e.g. a user's own model)."""
    p = Path(qmodel) / "provenance.json"
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"malformed {p}: {e}") from e


def check_held_out(provenance: dict[str, Any], task_ids: list[str]) -> None:
    """Raise when a reported task was one the Q-model was trained on."""
    trained = set(map(str, provenance.get("collect", {}).get("train_tasks", [])))
    overlap = sorted(trained & set(map(str, task_ids)), key=lambda x: (len(x), x))
    if overlap:
        raise AgentqError(
            f"the Q-model was trained on {len(overlap)} of the demo's tasks ({', '.join(overlap[:5])}); "
            "the demo reports held-out tasks only"
        )


def run_demo(
    out: str | Path = "agentq-demo",
    *,
    tasks: int = 0,
    n: int = 0,
    max_steps: int = 0,
    qmodel: str | Path | None = None,
    policy: str = "smollm2",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo and print its table; returns the report (see the module docstring)."""
    from agentq.config import parse_key_values
    from agentq.environments import make
    from agentq.eval.config import EvalConfig, split_list
    from agentq.eval.runner import run_evaluation

    t0 = time.perf_counter()
    qdir = Path(qmodel) if qmodel else ASSET_QMODEL
    if not (qdir / "qmodel.json").is_file():
        raise UserInputError(
            f"no Q-value model in {qdir}: train one with `python examples/pipeline.py --scale small "
            "--ship` (or pass --qmodel DIR)"
        )
    prov = read_provenance(qdir)
    n_tasks = tasks or DEMO_TASKS
    task_ids = make("webshop").tasks("test")[:n_tasks]
    check_held_out(prov, task_ids)
    n_cands = n or DEMO_N
    steps = max_steps or DEMO_MAX_STEPS
    train = prov.get("train", {}).get("metrics", {})
    val_acc = train.get("validation_pairwise_accuracy")
    print(
        f"agentq demo: policy {policy} on {len(task_ids)} held-out WebShop test tasks "
        f"(max {steps} steps, search = the instruction), greedy vs random@{n_cands} vs "
        f"best-of-{n_cands} with the Q-value model {qdir.name}"
    )
    if prov:
        c = prov.get("collect", {})
        p = prov.get("pairs", {})
        made_by = " ; ".join(prov.get("commands") or [prov.get("command", "?")])
        print(
            f"  Q-model: LoRA r={prov.get('config', {}).get('lora_r')} on SmolLM2, step-level DPO on "
            f"{p.get('train', '?')} pairs from MCTS over {len(c.get('train_tasks', []))} TRAIN-split "
            f"tasks (pairwise accuracy {'n/a' if val_acc is None else f'{val_acc:.2f}'} on "
            f"{p.get('validation', '?')} pairs of held-out tasks); made by: {made_by}"
        )
    cmd = ["agentq", "demo"] + ([] if str(out) == "agentq-demo" else ["--out", str(out)])
    for flag, val in (("--tasks", tasks), ("--n", n), ("--max-steps", max_steps)):
        if val:
            cmd += [flag, str(val)]
    if qmodel:
        cmd += ["--qmodel", str(qmodel)]
    if policy != "smollm2":
        cmd += ["--policy", policy]
    config = EvalConfig(
        env="webshop",
        split="test",
        policy=policy,
        qmodel=qdir,
        methods=split_list(DEMO_METHODS),
        n=[n_cands],
        tasks=task_ids,
        max_steps=steps,
        temperature=DEMO_TEMPERATURE,
        env_options=parse_key_values(DEMO_ENV_OPTIONS),
        policy_options=parse_key_values(DEMO_POLICY_OPTIONS),
        seed=0,
        out=Path(out),
        resume=resume,
        overwrite=not resume,
        progress=progress,
    )
    rep = run_evaluation(
        config,
        command=shlex.join(cmd),
        extra_config={"demo": True, "qmodel_dir": str(qdir), "qmodel_provenance": prov},
    )
    wall = time.perf_counter() - t0
    print()
    print(rep["table"])
    print()
    print(
        f"report: {Path(out) / 'report.md'} | plot: {Path(out) / 'success.png'} | "
        f"trees: {Path(out) / 'trajectories.html'} | total {wall:.0f} s"
    )
    rep["demo_wall_s"] = wall
    return rep
