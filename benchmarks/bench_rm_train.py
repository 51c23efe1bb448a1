"""Reward-model training step cost, measured side by side in one run (docs/reward.md).

The same batch of TARA pairs, one optimiser step each way: the plain pass (every sequence
encodes the shared system prompt and tool list) against the shared-prefix pass, with LoRA on
every layer and on the top layers only. Prints seconds per step and the speed-up over the
plain all-layer step. Run::

    python benchmarks/bench_rm_train.py --base smollm2 --pairs 4 --repeats 2
"""

from __future__ import annotations

import argparse
import time

from agentq.data.tara import load_tara_dir
from agentq.models.reward import load_toolset
from agentq.models.reward_train import RMTrainConfig, build_model, examples_from_tara, pair_losses


def main(argv: list[str] | None = None) -> None:
    """Time one step per setting and print the table."""
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", default="smollm2")
    ap.add_argument("--data", default="../shared/data/tara")
    ap.add_argument("--file", default="wikisearch")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--top-layers", type=int, default=12)
    args = ap.parse_args(argv)
    rows = load_tara_dir(args.data)[args.file][: args.pairs]
    batch = examples_from_tara(rows)
    tools = load_toolset().tools(include_env_tools=False)
    settings = [
        ("plain pass, LoRA on every layer", False, None),
        ("shared prefix, LoRA on every layer", True, None),
        (f"shared prefix, LoRA on the top {args.top_layers} layers", True, args.top_layers),
    ]
    results = []
    for label, share, layers in settings:
        cfg = RMTrainConfig(base=args.base, max_length=1024, share_prefix=share, lora_layers=layers)
        rm = build_model(cfg, tools=tools)
        rm.lm.train()
        opt = torch.optim.AdamW([p for p in rm.lm.parameters() if p.requires_grad], lr=1e-4)
        times = []
        for _ in range(args.repeats + 1):  # the first step warms up
            t0 = time.perf_counter()
            loss, _ = pair_losses(rm, batch, cfg)
            loss.backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t0)
        results.append((label, min(times[1:])))
    base = results[0][1]
    print(
        f"{args.pairs} pairs of {args.file} per step, {args.base}, torch threads {torch.get_num_threads()}"
    )
    print("| setting | s / step | speed-up |")
    print("|---|---:|---:|")
    for label, t in results:
        print(f"| {label} | {t:.1f} | {base / t:.2f}x |")


if __name__ == "__main__":
    main()
