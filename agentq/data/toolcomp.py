"""ToolComp's process-supervision rows as scorer inputs, built the way ToolComp's readers build them.

A row of ToolComp's process-supervision set (``vaskarnath/toolcomp_process_supervision_eval``;
JSON Lines or parquet) holds ``prompt``, ``tools`` (a list, or that list written as a string),
``historical_date``, ``final_answer``, ``history`` (a JSON string: empty for a plan row, else the
``action plan`` step followed by the ReAct steps taken so far) and two candidate next steps,
``preferred`` and ``dispreferred``. Every field of a step is a struct ``{"text", "label"}``:
the label is the annotation. In parquet every struct carries every field, so the fields a step
does not have come as nulls.

ToolComp's readers (``prompts/react.py``, ``prompts/action_plan.py``, and the pairwise judge of
``inference/llm_as_judge_inference.py``) build

- a **react row**: a system message (the current date, the ``FUNCTIONS`` spec of the row's tools
  plus ``finish``, the Thought / Action / Action Input / End Action format, the final-answer
  rules) and one user message ``Question: ...\\n\\nAction Plan: ...\\n\\nHistory: ...``, the
  history being each earlier step as ``Thought / Action / Action Input / End Action /
  Observation``; a candidate is the step written in the same format, with its observation, as
  the judge sees it;
- a **plan row** (empty history): the action-planning system message (date, functions, question)
  and ``Question: ...``; a candidate is the plan text.

:func:`toolcomp_pair` does the same. Only the ``text`` of a field is ever read: no label, no
``final_answer`` and no key name reaches the context or the candidates. The instruction
wording is agentq's paraphrase of ToolComp's; the structure, the order of the parts and the
spelling of the step fields are ToolComp's. ``candidate_observation=False`` (a departure) scores
a candidate step without its observation, as an agent's step is scored before it runs.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from agentq.errors import UserInputError
from agentq.render import observation_text
from agentq.types import Context

DEFAULT_DATE = "Tuesday, September 03, 2024"
"""The date ToolComp's prompts use when a row has no ``historical_date``."""

STEP_FIELDS = ("thought", "action", "action_input", "observation")
PLAN_FIELD = "action plan"


def _spec(name: str, description: str, params: dict[str, str], required: list[str]) -> dict:
    return {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {k: {"type": "string", "description": v} for k, v in params.items()},
            "required": required,
        },
    }


TOOL_SPECS: dict[str, dict[str, Any]] = {
    s["name"]: s
    for s in (
        _spec(
            "calculator",
            "Evaluates an arithmetic expression with +, -, *, / and ^ (wrap a negative number "
            "in brackets, e.g. (-5)).",
            {"operation": 'the expression, e.g. "2 * 3.14 * 5"'},
            ["operation"],
        ),
        _spec("date", "Returns the current date and time; takes no arguments.", {}, []),
        _spec(
            "google_search",
            "Searches Google: trivia, general knowledge, current events, and more.",
            {"query": "what to search for", "location": "where to search from (optional)"},
            ["query"],
        ),
        _spec(
            "wiki_search",
            "Searches Wikipedia and returns the titles and summaries of matching pages.",
            {"query": "what to search for", "num_results": "how many results to return"},
            ["query"],
        ),
        _spec(
            "current_weather",
            "Today's daily averages (temperature, rain, snow, hours of precipitation) for a city.",
            {"city_name": "the city", "country_code": "its ISO 3166 country code"},
            ["city_name", "country_code"],
        ),
        _spec(
            "historical_weather",
            "Daily weather averages for a city between two dates (from the 1940s up to five "
            "days ago).",
            {
                "city_name": "the city",
                "country_code": "its ISO 3166 country code",
                "start_date": "YYYY-MM-DD",
                "end_date": "YYYY-MM-DD",
            },
            ["city_name", "country_code", "start_date", "end_date"],
        ),
        _spec(
            "wolfram_alpha",
            "A computational knowledge engine (not a search engine).",
            {"query": "the question or computation"},
            ["query"],
        ),
        _spec(
            "time_series_intraday",
            "Intraday prices of an equity; a month in history can be asked for.",
            {
                "symbol": "the ticker symbol",
                "interval": "1min, 5min, 15min, 30min or 60min",
                "month": "YYYY-MM (optional)",
            },
            ["symbol", "interval"],
        ),
        _spec(
            "time_series_daily",
            "Daily prices of an equity for the last number_of_days days.",
            {"symbol": "the ticker symbol", "number_of_days": "how many days back"},
            ["symbol", "number_of_days"],
        ),
        _spec(
            "ticker_search",
            "Finds the ticker symbol for a company name or keywords.",
            {"keywords": "the text to search for"},
            ["keywords"],
        ),
        _spec(
            "python_interpreter",
            "Runs Python code (numpy, pandas and scipy available); print what you want to see.",
            {"code": "the code, lines separated by new lines"},
            ["code"],
        ),
    )
}
"""Function specs of ToolComp's tools by name (names and parameters as ToolComp's; descriptions
paraphrased)."""

FINAL_ANSWER_RULES = (
    "Give the final answer as a list, its parts in the order the question asks for them, so it "
    "can be checked by exact match, e.g. ['San Francisco', 78, ['Los Angeles Lakers', 'Golden "
    "State Warriors']]. When the question asks for a list in a particular order, wrap that list "
    "in {} instead of []: [San Francisco, 78, {Golden State Warriors, Los Angeles Lakers}]. Only "
    "the answer, no other text. Unless the question says otherwise give dates as YYYY-MM-DD, "
    "temperatures in Celsius, prices in dollars, lengths in meters, areas in meters^2, volumes in "
    "m^3 and angles in degrees."
)

FINISH_SPEC: dict[str, Any] = {
    "name": "finish",
    "description": "Ends the task with the answer to the whole question; only call it with the "
    "final answer.",
    "parameters": {
        "type": "object",
        "properties": {"answer": {"type": "string", "description": FINAL_ANSWER_RULES}},
        "required": ["answer"],
    },
}


def function_spec(tools: list[str]) -> tuple[str, list[str]]:
    """The ``FUNCTIONS`` JSON text of ``tools`` plus ``finish``, and the list of action names.

    A tool ToolComp does not define gets a spec with its name only.
    """
    specs = [TOOL_SPECS.get(t, {"name": t, "description": "", "parameters": {}}) for t in tools]
    specs.append(FINISH_SPEC)
    return json.dumps(specs, indent=4), [*tools, "finish"]


REACT_SYSTEM = """You are a helpful assistant with functions to call; each function is an action. Take the actions that are relevant and needed to reach the final answer to the user's question. Information must be accurate up to the current date and time: {date}. The user gives a question and a high-level action plan: carry out the plan (deviating a little where needed).

FUNCTIONS: {functions}

Use this format:

Thought: <why and how to use an action>
Action: <the action, one of {names}>
Action Input: <the input of the action, JSON with the required fields>
End Action

When the history's observations are enough to answer, call:

Thought: I have enough information to answer the question
Action: finish
Action Input: {{"answer": [your answer]}}
End Action

{rules}

From the question, the action plan and your earlier actions and observations under History, take your next action."""

PLAN_SYSTEM = """You are a helpful assistant with functions to call. Information must be accurate up to the current date: {date}.

FUNCTIONS: {functions}

Question: {question}

With the question and the functions above, write an action plan to answer it, one bullet per step. Do not write tool calls: describe the high-level steps, which tool each uses and how. Do not answer the question in the plan."""


def _where(source: str, row: int) -> str:
    return f"{source}: row {row}" if source else f"row {row}"


def _step_dict(value: Any, where: str, field: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise UserInputError(f"{where}: field {field!r} is not valid JSON ({e.msg})") from e
    if not isinstance(value, dict):
        raise UserInputError(
            f"{where}: field {field!r} must be a step object, not {type(value).__name__}"
        )
    return value


def field_text(step: dict[str, Any], key: str) -> str | None:
    """The ``text`` of one field of a ToolComp step (None when the step has no such field).

    Only ``text`` is read: the ``label`` beside it never leaves this function.
    """
    v = step.get(key)
    if v is None and key == "action_input":
        v = step.get("action input")
    if isinstance(v, dict):
        t = v.get("text")
        return None if t is None else str(t)
    return None if v is None else str(v)


def render_step(step: dict[str, Any], *, observation: bool = True) -> str:
    """A ReAct step as ToolComp writes it: Thought / Action / Action Input / End Action [/ Observation]."""
    text = (
        f"Thought: {field_text(step, 'thought') or ''}\n"
        f"Action: {field_text(step, 'action') or ''}\n"
        f"Action Input: {field_text(step, 'action_input') or ''}\n"
        "End Action"
    )
    if observation:
        text += "\n" + observation_text(field_text(step, "observation") or "")
    return text


def tool_names(value: Any) -> list[str]:
    """The row's tools: a list, or a list written as a JSON / Python string (as ToolComp reads it).

    Entries may be names or tool specs (``{"name": ...}`` or ``{"function": {"name": ...}}``).
    """
    if value is None:
        return []
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return []
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(s)
                break
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
        else:
            return [t.strip() for t in s.strip("[]").split(",") if t.strip()]
    if isinstance(value, (list, tuple)):
        return [_tool_name(t) for t in value]
    return [str(value)]


def _tool_name(t: Any) -> str:
    if not isinstance(t, dict):
        return str(t)
    fn = t.get("function")
    return str(t.get("name", fn.get("name", "") if isinstance(fn, dict) else ""))


def history_steps(value: Any, where: str) -> list[dict[str, Any]]:
    """The ``history`` of a row as a list of step dicts (a JSON string, a list, or empty)."""
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise UserInputError(f"{where}: field 'history' is not valid JSON ({e.msg})") from e
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserInputError(f"{where}: field 'history' must be a list of steps")
    return [_step_dict(h, where, f"history[{i}]") for i, h in enumerate(value)]


@dataclass
class ToolCompPair:
    """One process-supervision row as a scorer sees it: context, chosen and rejected texts."""

    context: Context
    chosen: str
    rejected: str
    is_plan: bool
    """True for a plan row (the candidates are action plans)."""
    id: str = ""
    tools: tuple[str, ...] = ()

    def as_tuple(self) -> tuple[Context, str, str]:
        """``(context, chosen, rejected)``, the shape pairwise accuracy takes."""
        return self.context, self.chosen, self.rejected


REQUIRED = ("prompt", "history", "preferred", "dispreferred")


def toolcomp_pair(
    row: dict[str, Any],
    *,
    source: str = "",
    index: int = 1,
    candidate_observation: bool = True,
) -> ToolCompPair:
    """The scorer input of one ToolComp process-supervision row (see the module docstring).

    ``index`` (1-based) and ``source`` name the row in errors: a missing field or a malformed
    step raises :class:`UserInputError` naming the file, the row and the field.
    """
    where = _where(source, index)
    for k in REQUIRED:
        if k not in row:
            raise UserInputError(f"{where}: missing field {k!r}")
    prompt = row["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserInputError(f"{where}: field 'prompt' must be a non-empty string")
    tools = tool_names(row.get("tools"))
    date = str(row.get("historical_date") or "").replace("\\", "") or DEFAULT_DATE
    functions, names = function_spec(tools)
    history = history_steps(row["history"], where)
    pref = _step_dict(row["preferred"], where, "preferred")
    disp = _step_dict(row["dispreferred"], where, "dispreferred")
    rid = str(row.get("id", f"{source or 'toolcomp'}:{index}"))
    if not history:
        texts = []
        for name, step in (("preferred", pref), ("dispreferred", disp)):
            plan = field_text(step, PLAN_FIELD)
            if plan is None:
                raise UserInputError(
                    f"{where}: field '{name}.action plan' missing (a row with an empty "
                    "history compares action plans)"
                )
            texts.append(plan)
        ctx: Context = [
            {
                "role": "system",
                "content": PLAN_SYSTEM.format(date=date, functions=functions, question=prompt),
            },
            {"role": "user", "content": f"Question: {prompt}"},
        ]
        return ToolCompPair(ctx, texts[0], texts[1], True, rid, tuple(tools))
    plan = field_text(history[0], PLAN_FIELD)
    if plan is None:
        raise UserInputError(f"{where}: field 'history[0].action plan' missing")
    for name, step in (("preferred", pref), ("dispreferred", disp)):
        if field_text(step, "action") is None:
            raise UserInputError(f"{where}: field '{name}.action' missing")
    past = "\n\n".join(render_step(h) for h in history[1:])
    ctx = [
        {
            "role": "system",
            "content": REACT_SYSTEM.format(
                date=date, functions=functions, names=names, rules=FINAL_ANSWER_RULES
            ),
        },
        {
            "role": "user",
            "content": f"Question: {prompt}\n\nAction Plan: {plan}\n\nHistory: {past}",
        },
    ]
    return ToolCompPair(
        ctx,
        render_step(pref, observation=candidate_observation),
        render_step(disp, observation=candidate_observation),
        False,
        rid,
        tuple(tools),
    )


def is_toolcomp_process_row(row: dict[str, Any]) -> bool:
    """True for a row of ToolComp's process-supervision shape (``preferred`` / ``dispreferred``)."""
    return "preferred" in row and "dispreferred" in row


__all__ = [
    "DEFAULT_DATE",
    "FINAL_ANSWER_RULES",
    "TOOL_SPECS",
    "ToolCompPair",
    "field_text",
    "function_spec",
    "history_steps",
    "is_toolcomp_process_row",
    "render_step",
    "tool_names",
    "toolcomp_pair",
]
