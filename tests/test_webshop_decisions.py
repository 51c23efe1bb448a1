"""benchmarks/webshop_decisions.py types WebShop pairs by what the page lacks for the goal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

GOAL = {"asin": "B0GOLDASIN", "goal_options": ["Orange", "20 oz"]}
ITEM = (
    "Instruction: a mug in orange and 20 oz\n[b0goldasin] Mug | $9.00\n"
    "capacity: [16 oz] [20 oz]\ncolor: [white] [orange]\n{chosen}"
    "[description] [features] [reviews] [buy now] [< prev]"
)
RESULTS = "Instruction: a mug\nPage 1 of 5 (50 results):\n[b0goldasin] Mug | $9.00\n[next >]"


@pytest.fixture
def wd(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import webshop_decisions

    return webshop_decisions


def pair(page: str, win: str, lose: str) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": page}],
        "chosen": [{"role": "assistant", "content": win}],
        "rejected": [{"role": "assistant", "content": lose}],
    }


def test_item_page_pairs_are_typed_by_the_missing_options(wd) -> None:
    one = ITEM.format(chosen="chosen: color=orange\n")
    both = ITEM.format(chosen="chosen: color=orange, capacity=20 oz\n")
    none = ITEM.format(chosen="")
    assert (
        wd.pair_type(pair(one, "click[20 oz]", "click[buy now]"), GOAL)
        == "missing option > buy, one chosen"
    )
    assert (
        wd.pair_type(pair(none, "click[20 oz]", "click[buy now]"), GOAL)
        == "missing option > buy, none chosen"
    )
    assert (
        wd.pair_type(pair(one, "click[orange]", "click[buy now]"), GOAL) == "wait > buy, one chosen"
    )
    assert wd.pair_type(pair(none, "click[reviews]", "click[buy now]"), GOAL) == (
        "wait > buy, none chosen"
    )
    assert (
        wd.pair_type(pair(one, "click[20 oz]", "click[orange]"), GOAL)
        == "missing option > re-click chosen"
    )
    assert wd.pair_type(pair(one, "click[20 oz]", "click[16 oz]"), GOAL) == "missing option > other"
    assert (
        wd.pair_type(pair(both, "click[buy now]", "click[16 oz]"), GOAL) == "buy (complete) > other"
    )
    assert wd.pair_type(pair(both, "click[16 oz]", "click[white]"), GOAL) is None
    assert wd.pair_type(pair(one, "click[white]", "click[16 oz]"), GOAL) is None


def test_results_page_pairs(wd) -> None:
    assert (
        wd.pair_type(pair(RESULTS, "click[b0goldasin]", "click[next >]"), GOAL)
        == "gold product > other"
    )
    assert wd.pair_type(pair(RESULTS, "click[next >]", "click[b0goldasin]"), GOAL) is None


def test_bad_pairs_file_is_one_error_line(wd, tmp_path: Path, capsys) -> None:
    assert wd.main([str(tmp_path / "missing.jsonl"), "--qmodel", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_trajectory_counts_of_a_premature_buy(wd) -> None:
    def step(action: str, obs: str, cands: list[str]) -> dict[str, Any]:
        return {
            "action": action,
            "observation": obs,
            "selection": {"candidates": [{"text": c} for c in cands]},
        }

    one = ITEM.format(chosen="chosen: color=orange\n")
    episode = {
        "success": False,
        "steps": [
            step("search[mug]", RESULTS, ["search[mug]"]),
            step(
                "click[b0goldasin]", ITEM.format(chosen=""), ["click[b0goldasin]", "click[next >]"]
            ),
            step("click[orange]", one, ["click[orange]", "click[20 oz]", "click[buy now]"]),
            step("click[buy now]", "You bought it.", ["click[buy now]", "click[16 oz]"]),
        ],
    }
    c = wd.trajectory_counts(episode, GOAL)
    assert c["the gold product was among the first results page's samples"] == 1
    assert c["opened the gold product"] == 1
    # offered on the first item page (orange, taken); at the buy step 20 oz was not offered
    assert c["gold item page, a missing goal option among the samples"] == 1
    assert c["... took it"] == 1
    assert c["bought the gold product"] == 1 and c["... with a goal option still missing"] == 1
    assert c["... of those, the missing option was among the samples at the buy step"] == 0
    assert c["bought something"] == 1 and c["success"] == 0


def test_no_pairs_and_no_trajectories_is_one_error_line(wd, capsys) -> None:
    assert wd.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
