"""``tooluse``: a ToolComp-style ReAct environment over offline tools.

Each task is a question whose answer needs one or more tools (weather on a date and arithmetic,
stock price differences, the weekday of a date plus N days, a wiki lookup and a calculation,
short programs ...). The agent writes ReAct steps (``Thought:`` / ``Action:`` / ``Action Input:``
JSON), each executed by :meth:`ToolUseEnv.step` with the tool's output as the observation, and
ends with ``Action: finish`` / ``Action Input: {"answer": ...}``: reward 1 when
:func:`~agentq.envs.tooluse.grading.grade_answer` accepts the answer, else 0.

Tasks come from the shipped ``data/tasks.jsonl`` (fixed ``train``/``test`` splits) or, with
``tasks_path``, from a ToolComp final-answer file (JSON, JSONL or parquet; split ``test``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentq.envs.tooluse.executor import run_tool_call
from agentq.envs.tooluse.grading import grade_answer
from agentq.envs.tooluse.react import FINISH, parse_turn, system_prompt
from agentq.envs.tooluse.tools import DATA_DIR, Tool, default_tools, load_jsonl

from agentq.errors import UserInputError
from agentq.types import Context, StepResult

SPLITS = ("train", "test")


def load_tasks(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The tasks of a ``tasks.jsonl`` file (the shipped one by default)."""
    p = Path(path) if path is not None else DATA_DIR / "tasks.jsonl"
    if not p.is_file():
        raise UserInputError(f"tasks file not found: {p}")
    return load_jsonl(p)


class ToolUseEnv:
    """The ToolComp-style tool-use environment (see the module docstring).

    Options: ``tasks_path`` (a ToolComp final-answer file or an agentq ``tasks.jsonl``),
    ``data_dir`` (tables and corpus for the tools), ``tools`` (names to offer, or ready
    :class:`Tool` objects), ``max_steps`` (the step limit; the plan counts as a step),
    ``python_timeout_s``, ``python_isolation`` (the python sandbox: ``bwrap``, or the weaker
    ``process`` by name), ``seed`` (accepted for the registry; the environment has no
    randomness).
    """

    name = "tooluse"

    def __init__(
        self,
        tasks_path: str | Path | None = None,
        data_dir: str | Path | None = None,
        tools: list[str] | Mapping[str, Tool] | None = None,
        max_steps: int = 12,
        python_timeout_s: float = 10.0,
        seed: int = 0,
        python_isolation: str = "bwrap",
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if isinstance(tools, Mapping):
            self.tools: dict[str, Tool] = dict(tools)
        else:
            try:
                self.tools = default_tools(
                    data_dir,
                    include=tools,
                    python_timeout_s=python_timeout_s,
                    python_isolation=python_isolation,
                )
            except (ValueError, OSError) as e:
                raise UserInputError(f"cannot build the tools: {e}") from e
        self.max_steps = max_steps
        self.deterministic = True
        self.seed_value = seed
        self._tasks: dict[str, dict[str, Any]] = {}
        self._load(tasks_path)
        self._task: dict[str, Any] | None = None
        self._steps = 0
        self._calls = 0
        self._planned = False
        self._done = False

    # -- tasks ---------------------------------------------------------------------------
    def _load(self, tasks_path: str | Path | None) -> None:
        records: list[dict[str, Any]]
        if tasks_path is None:
            records = load_tasks()
        else:
            p = Path(tasks_path)
            if not p.exists():
                raise UserInputError(f"tasks file not found: {p}")
            records = []
            raw = _peek_records(p)
            if raw and "question" in raw[0] and "id" in raw[0]:
                records = raw
            else:
                from agentq.envs.tooluse.toolcomp import load_final_answer

                for t in load_final_answer(p):
                    records.append(
                        {
                            "id": t.id,
                            "split": "test",
                            "question": t.prompt,
                            "answer": t.answer,
                            "tools": t.tools,
                            "historical_date": t.historical_date,
                            "calls": [],
                        }
                    )
        for r in records:
            self._tasks[str(r["id"])] = r

    def tasks(self, split: str) -> list[str]:
        """Task ids of ``split`` (``"train"``, ``"test"`` or ``"all"``), in file order."""
        if split == "all":
            return list(self._tasks)
        if split not in SPLITS:
            raise UserInputError(f"unknown split {split!r} for tooluse; known: train, test, all")
        return [i for i, t in self._tasks.items() if t.get("split", "test") == split]

    def task(self, task_id: str) -> dict[str, Any]:
        """The task record: ``question``, ``answer``, ``tools``, reference ``calls`` ..."""
        if task_id not in self._tasks:
            raise UserInputError(f"unknown tooluse task {task_id!r}")
        return self._tasks[task_id]

    # -- episode -------------------------------------------------------------------------
    def system_message(self, date: str | None = None) -> str:
        """The system prompt: the offered tools with their JSON schemas and the ReAct format."""
        specs = [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in self.tools.values()
        ]
        return system_prompt(specs, date)

    def reset(self, task_id: str) -> Context:
        """Start ``task_id``: the system prompt and the question."""
        self._task = self.task(task_id)
        self._steps = 0
        self._calls = 0
        self._planned = False
        self._done = False
        date = self._task.get("historical_date") or None
        return [
            {"role": "system", "content": self.system_message(date)},
            {"role": "user", "content": f"Question: {self._task['question']}"},
        ]

    def step(self, action: str) -> StepResult:
        """Execute the tool call (or the finish) in the assistant turn ``action``."""
        if self._task is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            return StepResult("The episode is over.", 0.0, True, {"invalid": True})
        self._steps += 1
        turn = parse_turn(action, allow_plan=self._calls == 0 and not self._planned)
        info: dict[str, Any] = {"invalid": False, "tool": turn.tool, "step": self._steps}
        reward = 0.0
        if turn.kind == "plan":
            self._planned = True
            obs = "Plan noted. Now take the first step (Thought / Action / Action Input)."
            info["plan"] = True
        elif turn.kind == "invalid":
            obs = f"Error: {turn.error}"
            info["invalid"] = True
            info["error"] = turn.error
        elif turn.kind == "finish":
            gold = self._task["answer"]
            correct = grade_answer(turn.answer, gold)
            reward = 1.0 if correct else 0.0
            self._done = True
            obs = f"Final answer submitted: {json.dumps(turn.answer, ensure_ascii=False)}"
            info.update({"answer": turn.answer, "gold": gold, "correct": correct})
        else:
            assert turn.tool is not None
            obs, ok = run_tool_call(self.tools, turn.tool, turn.args)
            self._calls += 1
            info["ok"] = ok
            if not ok:
                info["invalid"] = True
                info["error"] = obs
        if not self._done and self._steps >= self.max_steps:
            self._done = True
            info["step_limit"] = True
            obs += f"\nStep limit of {self.max_steps} reached: the episode ends without an answer."
        return StepResult(obs, reward, self._done, info)

    def valid_actions(self) -> list[str] | None:
        """None: the action space is open-ended (free text with JSON arguments)."""
        return None

    def seed(self, seed: int) -> None:
        """Accepted for the Env protocol; the environment is deterministic."""
        self.seed_value = seed

    def snapshot(self) -> Any:
        """The episode state (tools are stateless, so this is all of it)."""
        return (
            self._task["id"] if self._task else None,
            self._steps,
            self._calls,
            self._planned,
            self._done,
        )

    def restore(self, state: Any) -> None:
        """Return to a state taken by :meth:`snapshot`."""
        task_id, steps, calls, planned, done = state
        self._task = self.task(task_id) if task_id is not None else None
        self._steps, self._calls, self._planned, self._done = steps, calls, planned, done

    def close(self) -> None:
        """Nothing to release (each python call cleans up its own scratch directory)."""


def _peek_records(p: Path) -> list[dict[str, Any]]:
    """The first record of a JSONL file (to tell agentq tasks from ToolComp files)."""
    if p.suffix != ".jsonl":
        return []
    with open(p, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    return []
                if isinstance(rec, dict) and "question" in rec and "id" in rec:
                    return load_jsonl(p)
                return []
    return []


__all__ = ["FINISH", "SPLITS", "ToolUseEnv", "load_tasks"]
