"""Tool-use lift: SmolLM2 on the shipped tool-use test split, greedy vs N-sample methods.

One test task per task family (the first of each, so every kind of question is in), the same
seed for every method. Prints the markdown table of ``agentq eval`` and writes the report
directory. Run::

    python benchmarks/tooluse_lift.py --out runs/tooluse-lift [--per-family 1] [--max-steps 6]

The measured run of docs/eval.md (two Ray workers on the 2 CPU cores, resumable)::

    python benchmarks/tooluse_lift.py --out runs/tooluse-lift \
        --methods greedy,random,majority,best-of-n --scorer tool-verify --scorer rm:runs/rm \
        --scorer-option max_new_tokens=96 --scorer-option max_tool_calls=1 \
        --backend ray --workers 2 --resume
"""

from __future__ import annotations

import argparse
import sys

from agentq.envs import make

from agentq.eval.runner import run_evaluation


def family_tasks(per_family: int) -> list[str]:
    """The first ``per_family`` test tasks of each tool-use task family, in split order."""
    seen: dict[str, int] = {}
    out = []
    for t in make("tooluse").tasks("test"):
        fam = t.rsplit("-", 1)[0]
        if seen.get(fam, 0) < per_family:
            seen[fam] = seen.get(fam, 0) + 1
            out.append(t)
    return out


def main() -> None:
    """Parse the arguments and run the comparison."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/tooluse-lift")
    ap.add_argument("--policy", default="smollm2")
    ap.add_argument("--per-family", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=6)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--scorer", action="append", default=None)
    ap.add_argument("--methods", default="greedy,random,majority,best-of-n")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--scorer-option", action="append", default=None, help="key=value")
    ap.add_argument("--backend", default="local", help="local or ray")
    ap.add_argument("--workers", type=int, default=0, help="Ray workers (0 = as many as fit)")
    ap.add_argument("--resume", action="store_true", help="keep finished episodes")
    ap.add_argument(
        "--task-ids", default="", help="comma-separated task ids instead of the family tasks"
    )
    args = ap.parse_args()
    tasks = [t for t in args.task_ids.split(",") if t] or family_tasks(args.per_family)
    res = run_evaluation(
        env="tooluse",
        split="test",
        policy=args.policy,
        scorer=args.scorer or ["tool-verify"],
        methods=[args.methods],
        n=[args.n],
        tasks=tasks,
        max_steps=args.max_steps,
        temperature=args.temperature,
        scorer_option=args.scorer_option or [],
        backend=args.backend,
        workers=args.workers,
        out=args.out,
        overwrite=not args.resume,
        resume=args.resume,
        command="python " + " ".join(sys.argv),
    )
    print(res["table"])


if __name__ == "__main__":
    main()
