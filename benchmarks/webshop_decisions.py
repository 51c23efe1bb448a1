#!/usr/bin/env python
"""A WebShop Q-model's held-out pairwise accuracy on the decisions success hinges on.

``agentq train``'s own breakdown (``validation_accuracy_by_decision``) types a pair by its two
actions only. This script also reads each held-out task's goal (which options it asks for,
which product is the target) to split the item-page decisions by what the page lacks:

| type | the pair |
|---|---|
| gold product > other | results page: the target product over another action |
| buy (complete) > other | every goal option chosen: ``buy now`` over anything else |
| missing option > buy, none chosen | no option chosen yet: clicking a missing one over ``buy now`` |
| missing option > buy, one chosen | an option chosen, a goal option missing: clicking it over ``buy now`` |
| wait > buy, none chosen | no option chosen yet: any non-buy action but a goal option over ``buy now`` |
| wait > buy, one chosen | an option chosen, a goal option missing: any non-buy action but it over ``buy now`` |
| missing option > re-click chosen | clicking the missing option over re-clicking a chosen one |
| missing option > other | clicking the missing option over any other action |

A Q-model that learned "buying is good" without reading the chosen options wins the first
two rows and loses the next four: that is the premature buy seen in evaluation. The rows with
an option already chosen are the decision a success hinges on (one option chosen, one missing:
buying earns the partial reward, 0.8, against 0.95 for the missing option); the rows with none
chosen are easier (buying then earns less) and, in the trees, several times more frequent. Pairs come
from the ``validation`` split of a pairs.jsonl (tasks the model was not trained on); up to
``--per-type`` per row, a seeded sample.

    python benchmarks/webshop_decisions.py runs/ship6/pairs.jsonl \\
        --qmodel agentq/eval/assets/qmodel_webshop --qmodel runs/ship6/qmodel --per-type 60

``--trajectories DIR/trajectories.jsonl`` instead counts, per method of an ``agentq eval`` run,
what its episodes did on the way to the goal (:data:`TRAJECTORY_ROWS`: the gold product among
the samples and opened, a missing option offered and taken, purchases with options missing).
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
    "missing option > buy, none chosen",
    "missing option > buy, one chosen",
    "wait > buy, none chosen",
    "wait > buy, one chosen",
    "missing option > re-click chosen",
    "missing option > other",
)


def _click(text: str) -> str:
    return text.strip().lower()


def chosen_line(page: str) -> str:
    """The lower-cased ``chosen: kind=value, ...`` line of an item page ("" when none)."""
    return next((ln for ln in page.lower().splitlines() if ln.startswith("chosen:")), "")


def missing_options(page: str, goal: dict[str, Any]) -> list[str]:
    """The goal options (lower case) an item page does not show as chosen, as written."""
    chosen = chosen_line(page)
    return [
        o for o in (str(x).lower() for x in goal.get("goal_options") or []) if f"={o}" not in chosen
    ]


def pair_type(pair: dict[str, Any], goal: dict[str, Any]) -> str | None:
    """The row of :data:`TYPES` a pair belongs to (None: none of them)."""
    page = str(pair["prompt"][-1]["content"]).lower()
    lines = page.splitlines()
    chosen = chosen_line(page)
    win = _click(pair["chosen"][-1]["content"])
    lose = _click(pair["rejected"][-1]["content"])
    if "[buy now]" in page:  # an item page
        missing = missing_options(page, goal)
        if not missing:
            return "buy (complete) > other" if win == "click[buy now]" else None
        some = "one chosen" if chosen else "none chosen"
        if win in {f"click[{o}]" for o in missing}:
            if lose == "click[buy now]":
                return f"missing option > buy, {some}"
            if chosen and f"={lose[6:-1]}" in chosen:
                return "missing option > re-click chosen"
            return "missing option > other"
        return f"wait > buy, {some}" if lose == "click[buy now]" else None
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


TRAJECTORY_ROWS = (
    "bought something",
    "the gold product was among the first results page's samples",
    "opened the gold product",
    "gold item page, a missing goal option among the samples",
    "... took it",
    "bought the gold product",
    "... with a goal option still missing",
    "... of those, the missing option was among the samples at the buy step",
    "success",
)


def _on_gold_page(page: str, gold: str) -> bool:
    lines = page.lower().splitlines()
    return "[buy now]" in page.lower() and len(lines) > 1 and f"[{gold}]" in lines[1]


def trajectory_counts(episode: dict[str, Any], goal: dict[str, Any]) -> dict[str, int]:
    """The :data:`TRAJECTORY_ROWS` counts of one ``agentq eval`` episode (trajectories.jsonl).

    The page before step ``i`` is step ``i - 1``'s observation; goal options are matched as the
    page writes them (the reward's fuzzy matching may accept others).
    """
    gold = str(goal["asin"]).lower()
    c = dict.fromkeys(TRAJECTORY_ROWS, 0)
    steps = episode["steps"]
    for i, step in enumerate(steps):
        action = step["action"].strip().lower()
        page = steps[i - 1]["observation"] if i else ""
        cands = [
            x["text"].strip().lower() for x in (step.get("selection") or {}).get("candidates", [])
        ]
        if i == 1:
            c[TRAJECTORY_ROWS[1]] = int(f"click[{gold}]" in cands)
        if action == f"click[{gold}]":
            c[TRAJECTORY_ROWS[2]] = 1
        if not _on_gold_page(page, gold):
            continue
        missing = [f"click[{o}]" for o in missing_options(page, goal)]
        if action == "click[buy now]":
            c[TRAJECTORY_ROWS[5]] += 1
            if missing:
                c[TRAJECTORY_ROWS[6]] += 1
                c[TRAJECTORY_ROWS[7]] += any(m in cands for m in missing)
        if any(m in cands for m in missing):  # whatever was chosen, buy now included
            c[TRAJECTORY_ROWS[3]] += 1
            c[TRAJECTORY_ROWS[4]] += action in missing
    c[TRAJECTORY_ROWS[0]] = int(any(s["action"].strip().lower() == "click[buy now]" for s in steps))
    c[TRAJECTORY_ROWS[8]] = int(bool(episode.get("success")))
    return c


def trajectory_table(path: Path) -> str:
    """Per method of an ``agentq eval`` run on WebShop, :data:`TRAJECTORY_ROWS` summed."""
    from agentq.envs.webshop import WebShopEnv

    env = WebShopEnv()
    sums: dict[str, dict[str, int]] = {}
    with path.open() as f:
        for line in f:
            if line.strip():
                e = json.loads(line)
                counts = trajectory_counts(e, env.goal_of(str(e["task_id"])))
                into = sums.setdefault(e["method"], dict.fromkeys(TRAJECTORY_ROWS, 0))
                for k, v in counts.items():
                    into[k] += v
    methods = list(sums)
    out = ["| | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    out += [
        f"| {r} | " + " | ".join(str(sums[m][r]) for m in methods) + " |" for r in TRAJECTORY_ROWS
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table: one column per Q-model."""
    from agentq.data.tara import pairwise_accuracy
    from agentq.errors import UserInputError
    from agentq.specs import resolve_scorer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", type=Path, nargs="?", help="pairs.jsonl with a validation split")
    ap.add_argument("--qmodel", action="append", default=[], help="Q-model dir (repeatable)")
    ap.add_argument("--per-type", type=int, default=60, help="pairs per row (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--trajectories",
        type=Path,
        help="Instead: count what episodes of an agentq eval run did on the way to the goal.",
    )
    args = ap.parse_args(argv)
    try:
        if args.trajectories is not None:
            if not args.trajectories.exists():
                raise UserInputError(f"{args.trajectories}: not found")
            print(trajectory_table(args.trajectories))
            return 0
        if args.pairs is None or not args.qmodel:
            raise UserInputError("give a pairs.jsonl and at least one --qmodel (or --trajectories)")
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
