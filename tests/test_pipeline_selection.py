"""examples/pipeline.py picks the training decisions: best path, then `go on` ones, then a spread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

ITEM = (
    "Instruction: a mug in orange and 20 oz\n[b0goldasin] Mug | $9.00\n"
    "capacity: [16 oz] [20 oz]\ncolor: [white] [orange]\n{chosen}"
    "[description] [features] [reviews] [buy now] [< prev]"
)


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import pipeline

    return pipeline


def pair(task: str, page: str, win: str, lose: str, depth: int = 3) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": page}],
        "chosen": [{"role": "assistant", "content": win}],
        "rejected": [{"role": "assistant", "content": lose}],
        "task_id": task,
        "depth": depth,
        "q_chosen": 0.9,
        "q_rejected": 0.5,
        "visits_chosen": 5,
        "visits_rejected": 5,
    }


def decisions(pipeline, pairs: list[dict[str, Any]]) -> set[str]:
    return {pipeline.decision_key(p["task_id"], p["prompt"]) for p in pairs}


def test_go_on_decisions_prefer_a_partly_chosen_item(pipeline) -> None:
    none = ITEM.format(chosen="")
    one = ITEM.format(chosen="chosen: color=orange\n")
    both = ITEM.format(chosen="chosen: color=white, capacity=16 oz\n")
    pairs = [
        pair("1", none, "click[orange]", "click[buy now]", depth=5),
        pair("1", both, "click[orange]", "click[buy now]", depth=6),
        pair("1", one, "click[20 oz]", "click[buy now]", depth=2),
        pair("1", one, "click[buy now]", "click[< prev]", depth=2),  # same decision
        pair("2", one + " ", "click[buy now]", "click[16 oz]"),  # buy wins: not `go on`
    ]
    first = pipeline.go_on_decisions(pairs, 1, seed=0)
    assert first == {pipeline.decision_key("1", pairs[2]["prompt"])}
    # then more options chosen before fewer, whatever the depth
    two = pipeline.go_on_decisions(pairs, 2, seed=0)
    assert pipeline.decision_key("1", pairs[1]["prompt"]) in two
    assert len(pipeline.go_on_decisions(pairs, 10, seed=0)) == 3


def test_best_path_then_go_on_then_spread_keeps_the_budget(pipeline) -> None:
    one = ITEM.format(chosen="chosen: color=orange\n")
    pairs = [
        pair("1", "results page", "click[b0goldasin]", "click[next >]"),
        pair("2", one, "click[20 oz]", "click[buy now]"),
        pair("3", one + " ", "click[20 oz]", "click[buy now]"),
        pair("4", "another page", "click[x]", "click[y]"),
        pair("5", "a fifth page", "click[x]", "click[y]"),
    ]
    best = {pipeline.decision_key("1", pairs[0]["prompt"])}
    plain = pipeline.best_path_then_spread(pairs, best, 3, seed=0)
    assert len(decisions(pipeline, plain)) == 3 and pairs[0] in plain
    with_go_on = pipeline.best_path_then_spread(pairs, best, 3, seed=0, go_on=2)
    assert decisions(pipeline, with_go_on) == decisions(pipeline, pairs[:3])
    # the go-on quota never exceeds the budget the best path leaves
    capped = pipeline.best_path_then_spread(pairs, best, 2, seed=0, go_on=5)
    assert len(decisions(pipeline, capped)) == 2 and pairs[0] in capped
