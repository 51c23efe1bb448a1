#!/usr/bin/env python
"""Training throughput: agentq's grouped step-level DPO against TRL's DPOTrainer, same pairs.

Both train the same LoRA on the same model for one epoch over the same pairs: WebShop-shaped
decisions (a results-page context, several sibling actions per decision, every sibling pair),
built from the shipped WebShop data. Printed side by side in one run: pairs/s, prompt+action
tokens/s (tokens of the pairs as TRL sees them) and the ratio.

    python benchmarks/bench_train.py [--model smollm2] [--decisions 6] [--actions 3]
"""

from __future__ import annotations

import argparse
import itertools
from typing import Any


def webshop_pairs(decisions: int, actions: int) -> list[dict[str, Any]]:
    """Sibling pairs at WebShop results pages (real pages of the shipped data)."""
    from agentq.envs.webshop import WebShopEnv
    from agentq.envs.webshop.env import instruction_query

    from agentq.render import advance_context

    env = WebShopEnv()
    out = []
    for tid in env.tasks("train")[:decisions]:
        ctx = env.reset(tid)
        q = f"search[{instruction_query(env.goal_of(tid)['instruction_text'])}]"
        obs, *_ = env.step(q)
        ctx = advance_context(ctx, q, obs)
        acts = [a for a in (env.valid_actions() or []) if "b0" in a][:actions]
        for hi, lo in itertools.combinations(acts, 2):
            out.append(
                {
                    "prompt": ctx,
                    "chosen": [{"role": "assistant", "content": hi}],
                    "rejected": [{"role": "assistant", "content": lo}],
                    "task_id": tid,
                    "depth": 1,
                    "q_chosen": 1.0,
                    "q_rejected": 0.0,
                    "split": "train",
                }
            )
    return out


def run(trainer: str, pairs: list[dict[str, Any]], model: str, out: str) -> float:
    """Wall seconds of one epoch of ``agentq train`` with ``trainer`` (model load excluded)."""
    from agentq.models.train import TrainConfig, train_qmodel

    cfg = TrainConfig(
        trainer=trainer,
        epochs=1.0,
        batch_size=1 if trainer == "grouped" else 3,
        max_length=512,
        lora_r=4,
        lora_alpha=8,
        target_modules=("q_proj", "v_proj"),
        learning_rate=1e-4,
        gradient_checkpointing=False,
    )
    res = train_qmodel(pairs, model, out, cfg, overwrite=True, progress=False)
    return float(res.metrics["wall_s"])


def main() -> None:
    """Run both trainers on the same pairs and print the table."""
    import tempfile

    from agentq.models.loading import load_tokenizer
    from agentq.render import tokenize_for_scoring

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--decisions", type=int, default=6)
    ap.add_argument("--actions", type=int, default=3)
    args = ap.parse_args()
    pairs = webshop_pairs(args.decisions, args.actions)
    tok = load_tokenizer(args.model)
    tokens = 0
    for p in pairs:
        for side in ("chosen", "rejected"):
            a, b = tokenize_for_scoring(tok, p["prompt"], p[side][-1]["content"], 512)
            tokens += len(a) + len(b)
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        for trainer in ("trl", "grouped"):
            rows[trainer] = run(trainer, pairs, args.model, f"{d}/{trainer}")
    print(
        f"bench_train: {args.model}, {len(pairs)} pairs from {args.decisions} decisions "
        f"({args.actions} sibling actions each), {tokens} pair tokens, one epoch, LoRA r=4 q/v"
    )
    print("| trainer | wall s | pairs/s | tokens/s |")
    print("|---|---|---|---|")
    for name, wall in rows.items():
        label = "TRL DPOTrainer" if name == "trl" else "agentq grouped"
        print(f"| {label} | {wall:.1f} | {len(pairs) / wall:.3f} | {tokens / wall:.0f} |")
    print(f"speed-up (grouped vs TRL, pairs/s): {rows['trl'] / rows['grouped']:.2f}x")


if __name__ == "__main__":
    main()
