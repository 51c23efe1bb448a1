"""Loaders for ToolComp's published formats (Nath et al., 2025), from local files.

- The final-answer set: one record per prompt with ``prompt``, ``tools`` (a list of tool names,
  or that list written as a Python/JSON string), ``answer`` and ``historical_date``.
- The process-supervision set: ``prompt``, ``tools``, ``historical_date``, ``final_answer``,
  ``history`` (a JSON string or list of earlier steps; its first entry holds the
  ``action plan``) and ``preferred`` / ``dispreferred`` (one step each: an ``action plan``
  when the history is empty, else ``thought`` / ``action`` / ``action_input`` /
  ``observation``, each ``{"text": ..., "label": ...}``).

Files may be JSON (a list of records, or ``{"data": [...]}``), JSON Lines, or parquet (read with
pyarrow). Nothing is downloaded: pass the files you have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentq.envs.tooluse.react import format_turn, system_prompt

from agentq.data.toolcomp import tool_names
from agentq.errors import UserInputError
from agentq.eval.answers import parse_answer as _parse_answer
from agentq.render import advance_context
from agentq.types import Context


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON, JSON Lines or parquet file; :class:`UserInputError` if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError as e:  # pragma: no cover - pyarrow is a dev dependency
                raise UserInputError(
                    "reading parquet needs pyarrow (pip install 'agentq[parquet]')"
                ) from e
            return [dict(r) for r in pq.read_table(p).to_pylist()]
        with open(p, encoding="utf-8") as f:
            text = f.read()
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
    except UserInputError:
        raise
    except Exception as e:
        raise UserInputError(f"cannot read {p}: {type(e).__name__}: {e}") from e
    if isinstance(data, dict):
        for key in ("data", "rows", "examples", "train", "test"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UserInputError(f"{p} does not hold a list of records")
    return data


def parse_answer(value: Any) -> Any:
    """A ToolComp answer string as a value: a (nested) list or number when written as one.

    ``{...}`` (ToolComp's marker for a list in a fixed order) becomes an
    :class:`~agentq.eval.answers.OrderedList`; see :func:`agentq.eval.answers.parse_answer`.
    """
    return _parse_answer(value)


@dataclass
class ToolCompTask:
    """One prompt of the final-answer set."""

    id: str
    prompt: str
    tools: list[str]
    answer: Any
    """The gold answer, parsed (a list or number when written as one)."""
    answer_text: str
    historical_date: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def load_final_answer(path: str | Path) -> list[ToolCompTask]:
    """The final-answer set in ``path``; :class:`UserInputError` when a field is missing."""
    out = []
    for i, r in enumerate(load_records(path)):
        missing = [k for k in ("prompt", "answer") if k not in r]
        if missing:
            raise UserInputError(
                f"{path}: record {i} lacks {', '.join(missing)} (not a ToolComp final-answer file?)"
            )
        answer_text = r["answer"] if isinstance(r["answer"], str) else json.dumps(r["answer"])
        out.append(
            ToolCompTask(
                id=str(r.get("id", f"toolcomp-{i:04d}")),
                prompt=str(r["prompt"]),
                tools=tool_names(r.get("tools")),
                answer=parse_answer(r["answer"]),
                answer_text=answer_text,
                historical_date=(str(r["historical_date"]) if r.get("historical_date") else None),
                extra={
                    k: v
                    for k, v in r.items()
                    if k not in ("prompt", "tools", "answer", "historical_date", "id")
                },
            )
        )
    return out


@dataclass
class ToolCompStep:
    """One step of a ToolComp trajectory: an action plan, or a ReAct step (with labels)."""

    action_plan: str | None = None
    thought: str = ""
    action: str = ""
    action_input: str = ""
    observation: str = ""
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def is_plan(self) -> bool:
        """True for an action-plan step."""
        return self.action_plan is not None and not self.action

    def render(self) -> str:
        """The step as the assistant turn the environment parses (no observation)."""
        if self.is_plan:
            return f"Action Plan:\n{(self.action_plan or '').strip()}"
        args: Any = self.action_input
        try:
            args = json.loads(self.action_input)
        except (json.JSONDecodeError, TypeError):
            pass
        return format_turn(self.thought.strip(), self.action.strip(), args)

    @classmethod
    def from_dict(cls, d: Any) -> ToolCompStep:
        """Build from ToolComp's dict (``{"thought": {"text", "label"}, ...}``)."""
        if d is None:
            return cls()
        if isinstance(d, str):
            d = json.loads(d)

        def text(key: str) -> str:
            v = d.get(key)
            if isinstance(v, dict):
                return "" if v.get("text") is None else str(v.get("text"))
            return "" if v is None else str(v)

        labels = {
            k: v.get("label")
            for k, v in d.items()
            if isinstance(v, dict) and v.get("label") is not None
        }
        plan = d.get("action plan", d.get("action_plan"))
        return cls(
            action_plan=text("action plan" if "action plan" in d else "action_plan")
            if plan is not None
            else None,
            thought=text("thought"),
            action=text("action"),
            action_input=text("action_input"),
            observation=text("observation"),
            labels=labels,
        )


@dataclass
class ProcessSupervisionExample:
    """One record of the process-supervision set: a history and two candidate next steps."""

    id: str
    prompt: str
    tools: list[str]
    historical_date: str | None
    final_answer: str | None
    history: list[ToolCompStep]
    preferred: ToolCompStep
    dispreferred: ToolCompStep

    @property
    def is_plan(self) -> bool:
        """True when the pair compares action plans (the history is empty)."""
        return not self.history

    def context(self, tool_specs: list[dict[str, Any]] | None = None) -> Context:
        """The chat context before the compared step, in agentq's rendering.

        ``tool_specs`` (``name``/``description``/``parameters`` dicts) describe the tools in the
        system message; by default only their names are listed.
        """
        specs = (
            tool_specs
            if tool_specs is not None
            else [{"name": n, "description": ""} for n in self.tools]
        )
        ctx: Context = [
            {"role": "system", "content": system_prompt(specs, self.historical_date)},
            {"role": "user", "content": f"Question: {self.prompt}"},
        ]
        for step in self.history:
            obs = (
                "Plan noted. Now take the first step (Thought / Action / Action Input)."
                if step.is_plan
                else step.observation
            )
            ctx = advance_context(ctx, step.render(), obs)
        return ctx

    def to_pair(self, tool_specs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A preference pair in TRL's conversational format (``prompt``/``chosen``/``rejected``)."""
        return {
            "prompt": self.context(tool_specs),
            "chosen": [{"role": "assistant", "content": self.preferred.render()}],
            "rejected": [{"role": "assistant", "content": self.dispreferred.render()}],
            "task_id": self.id,
            "depth": len(self.history),
            "is_plan": self.is_plan,
        }


def load_process_supervision(path: str | Path) -> list[ProcessSupervisionExample]:
    """The process-supervision set in ``path``; :class:`UserInputError` when a field is missing."""
    out = []
    for i, r in enumerate(load_records(path)):
        missing = [k for k in ("prompt", "preferred", "dispreferred") if k not in r]
        if missing:
            raise UserInputError(
                f"{path}: record {i} lacks {', '.join(missing)} (not a ToolComp process-supervision file?)"
            )
        hist = r.get("history")
        if isinstance(hist, str):
            hist = json.loads(hist) if hist.strip() else []
        out.append(
            ProcessSupervisionExample(
                id=str(r.get("id", f"toolcomp-ps-{i:05d}")),
                prompt=str(r["prompt"]),
                tools=tool_names(r.get("tools")),
                historical_date=(str(r["historical_date"]) if r.get("historical_date") else None),
                final_answer=r.get("final_answer"),
                history=[ToolCompStep.from_dict(h) for h in (hist or [])],
                preferred=ToolCompStep.from_dict(r["preferred"]),
                dispreferred=ToolCompStep.from_dict(r["dispreferred"]),
            )
        )
    return out


__all__ = [
    "ProcessSupervisionExample",
    "ToolCompStep",
    "ToolCompTask",
    "load_final_answer",
    "load_process_supervision",
    "load_records",
    "parse_answer",
]
