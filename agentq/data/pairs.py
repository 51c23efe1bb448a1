"""Step-level preference pairs from MCTS trees, in TRL's conversational preference format.

Each pair: ``prompt`` (the context messages at the parent state), ``chosen`` and ``rejected``
(one assistant message each), plus ``task_id``, ``depth``, ``q_chosen``, ``q_rejected``,
``visits_chosen``, ``visits_rejected`` and ``split`` (``train`` / ``validation``, by task).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.config import option
from agentq.data.jsonl import JsonlAppender, check_output_path, iter_jsonl
from agentq.errors import UserInputError
from agentq.render import assistant_message, context_along
from agentq.types import TaskTree, TreeNode

SCHEMES = ("best-path", "siblings")
VALUES = ("mean", "max")
"""How an action's value is read from a tree: ``mean`` (MCTS's Q, the mean return of the
simulations through it: the paper's estimate) or ``max`` (the best return found below it; see
:func:`max_returns`)."""
PAIR_FIELDS = ("prompt", "chosen", "rejected")


def split_of(task_id: str, val_fraction: float, seed: int = 0) -> str:
    """``"validation"`` for a stable ``val_fraction`` of task ids, ``"train"`` for the rest."""
    h = int(hashlib.sha256(f"{seed}|{task_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < val_fraction else "train"


def decision_key(task_id: Any, prompt: Iterable[Any]) -> str:
    """The one key of a decision (a task and the context its actions were tried in): the pairs
    of a decision share it, in training (one prompt pass per decision), validation and selection."""
    return json.dumps([task_id, list(prompt)], sort_keys=True, default=str)


def _context_at(tree: TaskTree, node: TreeNode):
    return context_along(
        tree.context, [(n.action or "", n.observation or "") for n in tree.path(node)]
    )


def max_returns(tree: TaskTree, gamma: float = 1.0) -> dict[int, float]:
    """The best return found from each node's step onwards: its (mean) reward plus ``gamma``
    times the best of its visited children, or, at a node without visited children, its own
    simulated return(s).

    In a deterministic environment (WebShop) this is a return some continuation really earns,
    so it is a lower bound of the optimal Q*(s, a) that, unlike the mean, does not count the
    rollout policy's later mistakes against an action whose payoff needs good follow-up moves
    (pick the options, then buy). With a stochastic environment prefer ``mean``.

    ``gamma`` < 1 discounts each further step, so of two ways to the same reward the shorter
    one is worth more: without it an action that can still be undone or postponed (click an
    option instead of ``buy now``) is never worth less than acting now, and a Q-model trained
    on such values postpones the final action past any step limit.
    """
    if not 0.0 < gamma <= 1.0:
        raise UserInputError(f"gamma must be in (0, 1], not {gamma}")
    out: dict[int, float] = {}
    for n in sorted(tree.nodes, key=lambda n: -n.depth):
        kids = [out[c.id] for c in tree.children(n) if c.visits > 0 and c.id in out]
        out[n.id] = n.mean_reward + gamma * max(kids) if kids else n.q
    return out


def _values(tree: TaskTree, value: str, gamma: float = 1.0) -> dict[int, float]:
    if value not in VALUES:
        raise UserInputError(f"unknown value {value!r}; use one of {', '.join(VALUES)}")
    return {n.id: n.q for n in tree.nodes} if value == "mean" else max_returns(tree, gamma)


def _pair(
    tree: TaskTree, parent: TreeNode, w: TreeNode, lo: TreeNode, q: dict[int, float]
) -> dict[str, Any]:
    return {
        "prompt": _context_at(tree, parent),
        "chosen": [assistant_message(w.action or "")],
        "rejected": [assistant_message(lo.action or "")],
        "task_id": tree.task_id,
        "depth": parent.depth,
        "q_chosen": q[w.id],
        "q_rejected": q[lo.id],
        "visits_chosen": w.visits,
        "visits_rejected": lo.visits,
    }


def best_leaf(tree: TaskTree) -> TreeNode:
    """The end of the best trajectory: the terminal node with the highest return.

    A terminal node drawn several times (a stochastic outcome, see ``TreeNode.outcomes``)
    counts with its mean reward, not with whichever draw came last. Ties go to the more
    visited node, then the earlier one. Without any terminal node the path follows the most
    visited child from the root.
    """

    def ret(n: TreeNode) -> float:
        path = tree.path(n)
        return sum(p.reward for p in path[:-1]) + n.mean_reward

    done = [n for n in tree.nodes if n.done and n.visits > 0]
    if done:
        return max(done, key=lambda n: (ret(n), n.visits, -n.id))
    node = tree.root
    while True:
        kids = [c for c in tree.children(node) if c.visits > 0]
        if not kids:
            return node
        node = max(kids, key=lambda c: (c.visits, c.q, -c.id))


def best_path_pairs(
    tree: TaskTree, margin: float = 0.0, value: str = "mean", gamma: float = 1.0
) -> list[dict[str, Any]]:
    """The paper's scheme: at each depth of the best trajectory, highest-Q child vs lowest-Q child.

    A depth is skipped when the two tie (difference <= ``margin``) or fewer than two children
    were visited. ``value`` picks the Q estimate (:data:`VALUES`).
    """
    q = _values(tree, value, gamma)
    out = []
    leaf = best_leaf(tree)
    for parent in [tree.root, *tree.path(leaf)[:-1]]:
        kids = [c for c in tree.children(parent) if c.visits > 0]
        if len(kids) < 2:
            continue
        w = max(kids, key=lambda c: (q[c.id], c.visits, -c.id))
        lo = min(kids, key=lambda c: (q[c.id], -c.visits, c.id))
        if q[w.id] - q[lo.id] > margin:
            out.append(_pair(tree, parent, w, lo, q))
    return out


def sibling_pairs(
    tree: TaskTree,
    margin: float = 0.1,
    min_visits: int = 1,
    value: str = "mean",
    gamma: float = 1.0,
) -> list[dict[str, Any]]:
    """Agent Q's scheme: every sibling pair with |Q_w - Q_l| >= margin, both visited >= k times.

    ``value`` picks the Q estimate (:data:`VALUES`).
    """
    q = _values(tree, value, gamma)
    out = []
    for parent in tree.nodes:
        kids = [c for c in tree.children(parent) if c.visits >= max(min_visits, 1)]
        for i, a in enumerate(kids):
            for b in kids[i + 1 :]:
                qa, qb = q[a.id], q[b.id]
                if abs(qa - qb) >= margin and qa != qb:
                    w, lo = (a, b) if qa > qb else (b, a)
                    out.append(_pair(tree, parent, w, lo, q))
    return out


def check_pair_settings(
    scheme: str,
    *,
    margin: float | None,
    min_visits: int,
    val_fraction: float,
    value: str,
    gamma: float,
) -> None:
    """``UserInputError`` for a pair setting that cannot work (:func:`build_pairs`' checks)."""
    if not 0.0 < gamma <= 1.0:
        raise UserInputError(f"--gamma must be in (0, 1], not {gamma}")
    if scheme not in SCHEMES:
        raise UserInputError(f"unknown pair scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if value not in VALUES:
        raise UserInputError(f"unknown value {value!r}; use one of {', '.join(VALUES)}")
    if not (0.0 <= val_fraction <= 1.0):  # also refuses nan
        raise UserInputError(f"--val-fraction must be between 0 and 1, not {val_fraction}")
    if margin is not None and not (margin >= 0.0 and math.isfinite(margin)):
        raise UserInputError(f"--margin must be a finite number >= 0, not {margin}")
    if min_visits < 0:
        raise UserInputError(f"--min-visits must be >= 0, not {min_visits}")


@dataclass
class PairsConfig:
    """What ``agentq pairs`` runs: :func:`build_pairs` over a trees.jsonl, written to ``out``.

    Each field's default, help and checks are declared here; the command's flags come from
    them (:func:`agentq.cli_common.config_command`).
    """

    trees: Path = option(help="Input trees.jsonl.", argument=True)
    out: Path = option(Path("pairs.jsonl"), help="Output pairs.jsonl.")
    scheme: str = option("best-path", help="best-path (the paper) or siblings (Agent Q).")
    margin: float | None = option(None, help="Minimum Q gap (default: 0 best-path, 0.1 siblings).")
    min_visits: int = option(1, help="siblings: minimum visits of both actions.")
    value: str = option(
        "mean", help="Q estimate: mean (MCTS mean return) or max (best return found below)."
    )
    gamma: float = option(
        1.0, help="max: discount per further step (< 1: the shorter way to a reward wins)."
    )
    val_fraction: float = option(0.1, help="Share of tasks in the validation split.")
    seed: int = option(0, help="Seed of the train/validation split.")
    overwrite: bool = option(False, help="Replace an existing output.")

    def __post_init__(self) -> None:
        self.trees = Path(self.trees)
        self.out = Path(self.out)
        check_pair_settings(self.scheme, **self.pair_settings())

    def pair_settings(self) -> dict[str, Any]:
        """The keyword settings :func:`build_pairs` and :func:`check_pair_settings` share."""
        return {
            "margin": self.margin,
            "min_visits": self.min_visits,
            "val_fraction": self.val_fraction,
            "value": self.value,
            "gamma": self.gamma,
        }


def build_pairs(
    trees: Iterable[TaskTree],
    scheme: str = "best-path",
    *,
    margin: float | None = None,
    min_visits: int = 1,
    val_fraction: float = 0.1,
    seed: int = 0,
    value: str = "mean",
    gamma: float = 1.0,
) -> list[dict[str, Any]]:
    """Pairs of every successful tree, with a deterministic train/validation split by task.

    ``value`` is the Q estimate pairs are ranked by: ``mean`` (MCTS's Q, the default) or
    ``max`` (the best return found below an action, :func:`max_returns`), discounted by
    ``gamma`` per step (``max`` only).
    """
    check_pair_settings(
        scheme,
        margin=margin,
        min_visits=min_visits,
        val_fraction=val_fraction,
        value=value,
        gamma=gamma,
    )
    trees = list(trees)
    seen: set[str] = set()
    for tree in trees:
        if tree.task_id in seen:
            raise UserInputError(
                f"task {tree.task_id!r} has more than one tree (two collectors on one file?); "
                "keep one tree per task"
            )
        seen.add(tree.task_id)
    out = []
    for tree in trees:
        if tree.status != "ok" or not tree.nodes:
            continue
        if scheme == "best-path":
            pairs = best_path_pairs(tree, 0.0 if margin is None else margin, value, gamma)
        else:
            pairs = sibling_pairs(tree, 0.1 if margin is None else margin, min_visits, value, gamma)
        split = split_of(tree.task_id, val_fraction, seed)
        for p in pairs:
            p["split"] = split
        out.extend(pairs)
    return out


def write_pairs(
    path: str | Path, pairs: Iterable[dict[str, Any]], *, overwrite: bool = False
) -> int:
    """Write pairs.jsonl; returns the number of pairs written."""
    check_output_path(path, resume=False, overwrite=overwrite)
    p = Path(path)
    n = 0
    with JsonlAppender(p, truncate=True) as w:
        for pair in pairs:
            w.write(pair)
            n += 1
    return n


def read_pairs(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Load pairs.jsonl, checking each record; ``split`` keeps only that split."""
    out = []
    for i, d in enumerate(iter_jsonl(path)):
        for f in PAIR_FIELDS:
            if f not in d:
                raise UserInputError(f"{path}: pair {i + 1} has no {f!r} field")
        for f in ("chosen", "rejected"):
            msgs = d[f]
            if (
                not isinstance(msgs, list)
                or not msgs
                or not str(msgs[-1].get("content", "")).strip()
            ):
                raise UserInputError(f"{path}: pair {i + 1} has an empty {f!r} action")
        if not isinstance(d["prompt"], list):
            raise UserInputError(f"{path}: pair {i + 1}: 'prompt' must be a list of messages")
        if split is None or d.get("split", "train") == split:
            out.append(d)
    return out
