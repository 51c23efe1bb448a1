#!/usr/bin/env python
"""A WebShop Q-model's held-out pairwise accuracy on the decisions success hinges on.

``agentq train``'s own breakdown (``validation_accuracy_by_decision``) types a pair by its two
actions only. This script also reads each held-out task's goal (which options it asks for,
which product is the target) to split the item-page decisions by what the page lacks:

| type | the pair |
|---|---|
| gold product > other | results page: the target product over another action |
| buy (complete) > other | every goal option chosen: ``buy now`` over anything else |
| missing option > buy | a goal option missing: clicking it over ``buy now`` |
| wait > buy (incomplete) | a goal option missing and not the chosen action: any non-buy action over ``buy now`` |
| missing option > re-click chosen | clicking the missing option over re-clicking a chosen one |
| missing option > other | clicking the missing option over any other action |

A Q-model that learned "buying is good" without reading the chosen options wins the first
two rows and loses the next two: that is the premature buy seen in evaluation. Pairs come
from the ``validation`` split of a pairs.jsonl (tasks the model was not trained on); up to
``--per-type`` per row, a seeded sample.

    python benchmarks/webshop_decisions.py runs/ship6/pairs.jsonl \\
        --qmodel agentq/eval/assets/qmodel_webshop --qmodel runs/ship6/qmodel --per-type 60
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

TYPES = (
    "gold product > other",
    "buy (complete) > other",
    "missing option > buy",
    "wait > buy (incomplete)",
    "missing option > re-click chosen",
    "missing option > other",
)


def _click(text: str) -> str:
    return text.strip().lower()


def pair_type(pair: dict[str, Any], goal: dict[str, Any]) -> str | None:
    """The row of :data:`TYPES` a pair belongs to (None: none of them)."""
    page = str(pair["prompt"][-1]["content"]).lower()
    lines = page.splitlines()
    chosen_line = next((ln for ln in lines if ln.startswith("chosen:")), "")
    win = _click(pair["chosen"][-1]["content"])
    lose = _click(pair["rejected"][-1]["content"])
    options = [str(o).lower() for o in goal.get("goal_options") or []]
    if "[buy now]" in page:  # an item page
        missing = [o for o in options if f"={o}" not in chosen_line]
        if not missing:
            return "buy (complete) > other" if win == "click[buy now]" else None
        if win in {f"click[{o}]" for o in missing}:
            if lose == "click[buy now]":
                return "missing option > buy"
            if chosen_line and f"={lose[6:-1]}" in chosen_line:
                return "missing option > re-click chosen"
            return "missing option > other"
        return "wait > buy (incomplete)" if lose == "click[buy now]" else None
    if any(ln.startswith("page ") for ln in lines[:3]):
        return "gold product > other" if win == f"click[{str(goal['asin']).lower()}]" else None
    return None


def typed_pairs(
    rows: Iterable[dict[str, Any]], per_type: int, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """Validation pairs by :func:`pair_type`, at most ``per_type`` each (seeded sample)."""
    from agentq.envs.webshop import WebShopEnv

    env = WebShopEnv()
    by: dict[str, list[dict[str, Any]]] = {t: [] for t in TYPES}
    for p in rows:
        if p.get("split") != "validation":
            continue
        kind = pair_type(p, env.goal_of(str(p["task_id"])))
        if kind is not None:
            by[kind].append(p)
    rng = random.Random(seed)
    return {t: rng.sample(ps, min(per_type, len(ps))) if per_type else ps for t, ps in by.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table: one column per Q-model."""
    from agentq.data.tara import pairwise_accuracy
    from agentq.errors import UserInputError
    from agentq.specs import resolve_scorer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", type=Path, help="pairs.jsonl with a validation split")
    ap.add_argument("--qmodel", action="append", required=True, help="Q-model dir (repeatable)")
    ap.add_argument("--per-type", type=int, default=60, help="pairs per row (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if not args.pairs.exists():
            raise UserInputError(f"{args.pairs}: not found")
        with args.pairs.open() as f:
            rows = [json.loads(line) for line in f if line.strip()]
        groups = typed_pairs(rows, args.per_type, args.seed)
        if not any(groups.values()):
            raise UserInputError(f"{args.pairs}: no validation pair of a known type")
        for q in args.qmodel:
            if not (Path(q) / "qmodel.json").exists():
                raise UserInputError(f"{q}: not a Q-model directory (no qmodel.json)")
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, tuple[int, int]]] = {}
    for q in args.qmodel:
        scorer = resolve_scorer(f"qmodel:{q}")
        t0 = time.perf_counter()
        results[q] = {}
        for kind, ps in groups.items():
            if ps:
                r = pairwise_accuracy(scorer, ps)
                results[q][kind] = (r.wins, len(ps))
        print(f"{q}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print("| decision | pairs | " + " | ".join(args.qmodel) + " |")
    print("|---|---:|" + "---:|" * len(args.qmodel))
    for kind, ps in groups.items():
        if not ps:
            continue
        cells = []
        for q in args.qmodel:
            wins, n = results[q][kind]
            cells.append(f"{wins / n:.3f} ({wins}/{n})")
        print(f"| {kind} | {len(ps)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
