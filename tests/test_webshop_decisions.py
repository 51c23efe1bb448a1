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
    assert wd.pair_type(pair(one, "click[20 oz]", "click[buy now]"), GOAL) == "missing option > buy"
    assert (
        wd.pair_type(pair(one, "click[orange]", "click[buy now]"), GOAL)
        == "wait > buy (incomplete)"
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
