"""Does the learned reward model call tools, and do the tools help? (docs/reward.md)

On the TARA rows a reward model directory held out from training (``reward_model.json``'s
``data.heldout_ids``), per file, side by side in one run:

- ``rm (tools)``: the model writes its trace and agentq executes each tool call;
- ``rm (no tools)``: the same model and generation, no tool executed (it writes on after
  ``Observation:`` itself);
- ``rm (no trace)``: the value head on question and answer alone;
- ``tool-verify``: the non-learned checker.

Prints, per file and scorer, the strict pairwise accuracy (a tie is wrong, as Themis counts
it) with a 95% bootstrap interval, and for the generating modes the share of traces that call
a tool (every TARA row's recorded trace calls one, so a tool applies to each) and the share
whose call ran without error. Run::

    python benchmarks/rm_tool_use.py --rm runs/rm --per-file 20 --out runs/rm/tool_use.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentq.data.tara import TaraPair, load_tara_dir, pairwise_accuracy
from agentq.errors import UserInputError
from agentq.eval.report import bootstrap_ci
from agentq.models.reward import RMBudget, ToolAugmentedScorer, load_reward_model
from agentq.models.reward.storage import read_rm_config
from agentq.specs import resolve_scorer


class TraceLog:
    """A scorer wrapper that keeps the traces of every call (the scorer keeps the last only)."""

    def __init__(self, inner: ToolAugmentedScorer) -> None:
        self.inner = inner
        self.traces: list[Any] = []

    def prepare_pairs(self, pairs: Sequence[Any]) -> int:
        """The inner scorer's recorded observations."""
        return self.inner.prepare_pairs(pairs)

    def score(self, context: Any, actions: Sequence[str]) -> list[float]:
        """One score per action."""
        return self.score_batch([(context, actions)])[0]

    def score_batch(self, items: Sequence[tuple[Any, Sequence[str]]]) -> list[list[float]]:
        """Scores, traces kept."""
        out = self.inner.score_batch(items)
        self.traces.extend(self.inner.last_traces)
        return out


def strict_interval(wins: int, n: int) -> tuple[float, float]:
    """95% bootstrap interval of the share of wins (ties and losses wrong), from the counts."""
    return bootstrap_ci([1.0] * wins + [0.0] * (n - wins)) if n else (0.0, 0.0)


def heldout_rows(rm_dir: Path, data_dir: Path, per_file: int) -> dict[str, list[TaraPair]]:
    """The first ``per_file`` held-out TARA rows of each file the model was trained on."""
    cfg = read_rm_config(rm_dir)
    held = cfg.get("data", {}).get("heldout_ids") or {}
    if not held:
        raise UserInputError(f"{rm_dir}/reward_model.json lists no held-out rows")
    data = load_tara_dir(data_dir)
    out = {}
    for name, ids in held.items():
        by_id = {p.id: p for p in data.get(name, [])}
        rows = [by_id[i] for i in ids if i in by_id]
        out[name] = rows[:per_file] if per_file else rows
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run every scorer on every file, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rm", required=True, help="reward model directory (agentq train-rm --out)")
    ap.add_argument("--data", default="../shared/data/tara")
    ap.add_argument("--per-file", type=int, default=20, help="held-out rows per file (0 = all)")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--max-tool-calls", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--modes", default="generate,no-tools,none")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    rm_dir = Path(args.rm)
    try:
        rows = heldout_rows(rm_dir, Path(args.data), args.per_file)
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    model = load_reward_model(rm_dir)
    budget = RMBudget(
        max_tool_calls=args.max_tool_calls,
        max_new_tokens=args.max_new_tokens,
        max_segment_tokens=min(args.max_new_tokens, 96),
    )
    names = {"generate": "rm (tools)", "no-tools": "rm (no tools)", "none": "rm (no trace)"}
    results: dict[str, dict[str, Any]] = {}
    lines = [
        "| file | pairs | scorer | accuracy, ties wrong [95% CI] | wins / ties / losses "
        "| traces calling a tool | calls without error | wall s |",
        "|---|---:|---|---|---|---:|---:|---:|",
    ]
    for name, pairs in rows.items():
        res_file: dict[str, Any] = {}
        scorers: list[tuple[str, Any]] = [
            (names[m], TraceLog(ToolAugmentedScorer(model, trace=m, budget=budget)))
            for m in args.modes.split(",")
        ]
        scorers.append(("tool-verify", resolve_scorer("tool-verify")))
        for label, scorer in scorers:
            t0 = time.perf_counter()
            r = pairwise_accuracy(scorer, pairs, batch_size=args.batch_size, progress=True)
            wall = time.perf_counter() - t0
            lo, hi = strict_interval(r.wins, r.n)
            row: dict[str, Any] = {
                "pairs": r.n,
                "strict_accuracy": r.strict_accuracy,
                "ci95": [lo, hi],
                "wins": r.wins,
                "ties": r.ties,
                "losses": r.losses,
                "wall_s": round(wall, 1),
            }
            call_share = ok_share = "—"
            traces = getattr(scorer, "traces", None)
            if traces and label != names["none"]:
                called = sum(1 for t in traces if t.steps)
                clean = sum(1 for t in traces if any(s.ok for s in t.steps))
                row["traces"] = len(traces)
                row["traces_calling_a_tool"] = called
                row["traces_with_an_error_free_call"] = clean
                row["example_trace"] = traces[0].text[:600]
                call_share = f"{called / len(traces):.0%} ({called}/{len(traces)})"
                if label == names["generate"]:
                    ok_share = f"{clean / len(traces):.0%}"
            res_file[label] = row
            lines.append(
                f"| {name} | {r.n} | {label} | {r.strict_accuracy:.3f} [{lo:.3f}, {hi:.3f}] | "
                f"{r.wins} / {r.ties} / {r.losses} | {call_share} | {ok_share} | {wall:.0f} |"
            )
            print(lines[-1], flush=True)
        results[name] = res_file
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(
            json.dumps({"args": vars(args), "table": lines, "results": results}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
