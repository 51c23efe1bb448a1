"""The one ReAct parser: text in the ``Thought:`` / ``Action:`` / ``Action Input:`` /
``Observation:`` format, split into steps.

A *field* is a line that starts with a field name and a colon, in any case, after any markdown
decoration (spaces, tabs, ``>``, ``*``, ``_``, ``#``):

    Thought:  Action:  Action Input:  Observation:  Final Answer:  Action Plan: (or Plan:)

plus ``End Action``, which needs no colon (ToolComp closes an action input with it). A line that
starts no field continues the field before it, so a JSON argument, a plan or an observation may
span lines; text before the first field is ignored. Within a step the fields come in the order
Thought, Action Plan, Action, Action Input, End Action, Observation, Final Answer: a field that
does not come after the current step's last one (a second ``Thought:``, an ``Action:`` after an
``Observation:``, ...) starts a new step. Values keep their inner text as written (lines joined with
``\\n``) and lose the white space around them; a field that is absent is None.

Everything that reads ReAct text calls :func:`parse_react`: the tool-use environment (an
agent's turn, :func:`agentq.envs.tooluse.react.parse_turn`), the tool-augmented reward model
(the tool call of a generated trace, :func:`agentq.models.reward.parse_tool_call`) and the
TARA loader (a recorded multi-step trace, :func:`agentq.data.tara.parse_actions`). It is
linear in the length of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Field names as written (the canonical spelling), by the attribute of :class:`ReactStep`, in
#: their order within a step.
FIELD_NAMES = {
    "thought": "Thought",
    "plan": "Action Plan",
    "action": "Action",
    "action_input": "Action Input",
    "end_action": "End Action",
    "observation": "Observation",
    "final_answer": "Final Answer",
}
_ORDER = {name: i for i, name in enumerate(FIELD_NAMES)}

_FIELD_RE = re.compile(
    r"[ \t>*_#]*(?:"
    r"(?P<name>thought|action[ \t]*input|action[ \t]*plan|action|observation|final[ \t]*answer"
    r"|plan)[ \t]*:(?P<value>.*)"
    r"|(?P<end>end[ \t]*action)\b.*)",
    re.IGNORECASE | re.DOTALL,
)


_FIELD_KEYS = {
    "thought": "thought",
    "action": "action",
    "actioninput": "action_input",
    "observation": "observation",
    "finalanswer": "final_answer",
    "actionplan": "plan",
    "plan": "plan",
    "endaction": "end_action",
}


def _field_of(name: str) -> str:
    return _FIELD_KEYS[name.lower().replace(" ", "").replace("\t", "")]


@dataclass
class ReactStep:
    """One step of a ReAct text: each field's value, or None when the step does not have it."""

    thought: str | None = None
    action: str | None = None
    action_input: str | None = None
    observation: str | None = None
    final_answer: str | None = None
    plan: str | None = None
    end_action: str | None = None
    action_name: str | None = None
    """The ``Action:`` line's own text (the tool name), stripped; None without an action."""

    def is_empty(self) -> bool:
        """True when every field it has is empty."""
        return not any(getattr(self, f) for f in FIELD_NAMES)


def parse_react(text: str) -> list[ReactStep]:
    """The steps of a ReAct text (see the module docstring); never raises.

    A field with nothing after its name is there, empty (``""``); :meth:`ReactStep.is_empty`
    tells a step of empty fields.
    """
    steps: list[ReactStep] = []
    cur: dict[str, list[str]] | None = None
    last: str | None = None

    def flush() -> None:
        if cur is not None:
            step = ReactStep(**{k: "\n".join(v).strip() for k, v in cur.items()})
            if "action" in cur:
                step.action_name = cur["action"][0].strip()
            steps.append(step)

    for line in (text or "").split("\n"):
        m = _FIELD_RE.match(line)
        if m is not None:
            name = _field_of(m.group("name") or m.group("end"))
            if cur is None or last is None or _ORDER[name] <= _ORDER[last]:
                flush()
                cur = {}
            cur[name] = [(m.group("value") or "").strip()]
            last = name
        elif cur is not None and last is not None:
            cur[last].append(line)
    flush()
    return steps


def first_with(steps: list[ReactStep], field: str, start: int = 0) -> int | None:
    """The index of the first step from ``start`` on that has ``field`` (None when none has)."""
    for i in range(start, len(steps)):
        if getattr(steps[i], field) is not None:
            return i
    return None


__all__ = ["FIELD_NAMES", "ReactStep", "first_with", "parse_react"]
