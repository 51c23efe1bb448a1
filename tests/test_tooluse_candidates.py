"""benchmarks/tooluse_candidates.py classifies candidate turns with the environment's parser."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def tc(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import tooluse_candidates

    return tooluse_candidates


def test_classes(tc) -> None:
    def grade(a: object) -> bool:
        return a == 7

    assert tc.classify('Thought: t\nAction: calculator\nAction Input: {"expression": "3+4"}') == (
        "tool call"
    )
    assert tc.classify('Action: teleport\nAction Input: {"x": 1}') == "unknown tool"
    assert tc.classify("Action: weather\nAction Input: Paris") == "tool, bad input"
    assert tc.classify('Action: finish\nAction Input: {"answer": 7}', grade) == "finish (right)"
    assert tc.classify('Action: finish\nAction Input: {"answer": 8}', grade) == "finish (wrong)"
    assert tc.classify("Action: finish\nAction Input: seven") == "finish, bad input"
    assert tc.classify("The high in Paris was 28.5 degrees.") == "no action"


def test_table_from_a_run(tc, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agentq.envs import make

    task = make("tooluse").tasks("test")[0]
    ep = {
        "method": "random@2",
        "scorer": None,
        "task_id": task,
        "steps": [
            {
                "action": "hello",
                "selection": {
                    "candidates": [
                        {"text": "hello", "count": 1},
                        {
                            "text": 'Action: calculator\nAction Input: {"expression": "1"}',
                            "count": 1,
                        },
                    ]
                },
            }
        ],
    }
    (tmp_path / "trajectories.jsonl").write_text(json.dumps(ep) + "\n")
    tc.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| random@2 | candidates | 1 (50%) |" in out
    assert "| random@2 | executed | 0 |" in out and out.rstrip().endswith("1 (100%) |")


def test_missing_run_is_exit_2(tc, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        tc.main([str(tmp_path)])
    assert e.value.code == 2
    assert sys.modules["tooluse_candidates"] is tc
