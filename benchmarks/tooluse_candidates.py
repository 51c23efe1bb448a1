"""Where a tool-use policy's candidates fail: every candidate of every step of an eval run,
classified by the environment's own parser (docs/eval.md, "Tool use with SmolLM2").

Classes: ``tool call`` (a known tool with a JSON object of arguments), ``unknown tool``,
``tool, bad input`` (a tool named, its Action Input missing or not a JSON object), ``finish``
(well formed; graded right or wrong by the task's grader), ``finish, bad input``, ``plan``
(an action plan, allowed as a first turn) and ``no action`` (prose: no Action, no Final
Answer). Reads ``trajectories.jsonl`` of ``agentq eval`` / ``benchmarks/tooluse_lift.py``::

    python benchmarks/tooluse_candidates.py runs/tooluse-lift
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from agentq.envs import make
from agentq.envs.tooluse.grading import grade_answer
from agentq.envs.tooluse.react import parse_turn
from agentq.envs.tooluse.tools import TOOL_NAMES

CLASSES = (
    "tool call",
    "unknown tool",
    "tool, bad input",
    "finish (right)",
    "finish (wrong)",
    "finish, bad input",
    "plan",
    "no action",
)


def classify(text: str, grade: object = None) -> str:
    """The class of one candidate turn (``grade(answer) -> bool`` grades a finish)."""
    t = parse_turn(text, allow_plan=True)
    if t.kind == "plan":
        return "plan"
    if t.kind == "finish":
        ok = bool(grade(t.answer)) if callable(grade) else False
        return "finish (right)" if ok else "finish (wrong)"
    if t.kind == "tool":
        return "tool call" if t.tool in TOOL_NAMES else "unknown tool"
    if t.tool is None:
        return "no action"
    return "finish, bad input" if t.tool.lower() == "finish" else "tool, bad input"


def main(argv: list[str] | None = None) -> None:
    """Print, per method, the share of candidates (and of executed actions) in each class."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("run", help="an eval output directory (holds trajectories.jsonl)")
    args = ap.parse_args(argv)
    path = Path(args.run) / "trajectories.jsonl"
    if not path.is_file():
        print(f"error: {path} not found", file=sys.stderr)
        raise SystemExit(2)
    env = make("tooluse")

    def grader(task_id: str) -> object:
        gold = env.task(task_id)["answer"]
        return lambda answer: grade_answer(answer, gold)

    cands: dict[str, Counter[str]] = {}
    chosen: dict[str, Counter[str]] = {}
    for line in path.read_text().splitlines():
        ep = json.loads(line)
        name = ep["method"] + (f" ({ep['scorer']})" if ep.get("scorer") else "")
        g = grader(ep["task_id"])
        for step in ep["steps"]:
            chosen.setdefault(name, Counter())[classify(step["action"], g)] += 1
            sel = step.get("selection") or {}
            for c in sel.get("candidates") or [{"text": step["action"], "count": 1}]:
                cands.setdefault(name, Counter())[classify(c["text"], g)] += int(c.get("count", 1))
    head = "| method | what | " + " | ".join(CLASSES) + " |"
    print(head)
    print("|---|---|" + "---:|" * len(CLASSES))
    for name in cands:
        for what, table in (("candidates", cands[name]), ("executed", chosen[name])):
            total = sum(table.values()) or 1
            cells = " | ".join(
                f"{table[c]} ({table[c] / total:.0%})" if table[c] else "0" for c in CLASSES
            )
            print(f"| {name} | {what} | {cells} |")


if __name__ == "__main__":
    main()
