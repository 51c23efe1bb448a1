"""The ReAct text format of ToolComp: parsing an assistant turn and writing the system prompt.

An assistant turn is

    Thought: <reasoning>
    Action: <tool name>
    Action Input: <a JSON object of arguments>

(an optional ``End Action`` line after it is ignored), or, to end the episode,
``Action: finish`` with ``Action Input: {"answer": ...}``. The first turn may instead be an
action plan (``Action Plan:`` followed by numbered steps).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentq.react import first_with, parse_react

FINISH = "finish"
FINISH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"description": "the final answer: a number, a short text or a list"}},
    "required": ["answer"],
}


@dataclass
class ParsedTurn:
    """What an assistant turn asks for.

    ``kind`` is ``"tool"`` (call ``tool`` with ``args``), ``"finish"`` (``answer``), ``"plan"``
    (an action plan, no action) or ``"invalid"`` (``error`` says what is wrong).
    """

    kind: str
    tool: str | None = None
    args: dict[str, Any] | None = None
    args_text: str = ""
    answer: Any = None
    thought: str = ""
    plan: str = ""
    error: str | None = None


def _strip_fences(text: str) -> str:
    t = text.strip()
    if t.startswith("```"):
        t = re.sub(r"^```[a-zA-Z]*\s*", "", t)
        if t.endswith("```"):  # (a trailing-fence regex would be quadratic in whitespace runs)
            t = t[:-3]
    return t.strip().strip("`").strip()


def loads_safely(text: str, decoder: Any = None) -> tuple[Any, str | None]:
    """``json.loads`` (or ``decoder.raw_decode``) that never raises: ``(value, None)`` or
    ``(None, error text)``. Too deep a nesting and integers over Python's digit limit are
    errors like any other bad JSON."""
    try:
        if decoder is not None:
            return decoder.raw_decode(text)[0], None
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"{e.msg} at position {e.pos}"
    except RecursionError:
        return None, "nested too deeply"
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        return None, str(e).split(";")[0]


def parse_json_object(text: str) -> tuple[Any, str | None]:
    """Parse the JSON in an ``Action Input``: ``(value, None)`` or ``(None, error text)``.

    Code fences are removed; text after a complete JSON value is ignored.
    """
    t = _strip_fences(text)
    if not t:
        return None, "Action Input is empty; give a JSON object"
    value, first = loads_safely(t)
    if first is None:
        return value, None
    start = t.find("{")
    if start >= 0:
        value, err = loads_safely(t[start:], json.JSONDecoder())
        if err is None:
            return value, None
    return None, f"Action Input is not valid JSON ({first}): {t[:200]}"


def parse_turn(text: str, allow_plan: bool = True) -> ParsedTurn:
    """Parse one assistant turn (see the module docstring); never raises.

    The text is split into fields by agentq's one ReAct parser (:func:`agentq.react.parse_react`);
    this function reads the ToolComp format from them: the first ``Action:`` and the first
    ``Action Input:`` after it (a JSON object), or a ``Final Answer:``, or an action plan.
    """
    steps = parse_react(text or "")
    first_thought = first_with(steps, "thought")
    thought = (steps[first_thought].thought or "") if first_thought is not None else ""
    at = first_with(steps, "action")
    if at is None:
        at_final = first_with(steps, "final_answer")
        if at_final is not None:
            answer_text = steps[at_final].final_answer or ""
            value, err = parse_json_object(answer_text)
            answer = value if err is None else answer_text
            if isinstance(answer, dict) and "answer" in answer:
                answer = answer["answer"]
            return ParsedTurn("finish", tool=FINISH, answer=answer, thought=thought)
        at_plan = first_with(steps, "plan")
        if allow_plan and at_plan is not None:
            return ParsedTurn("plan", plan=steps[at_plan].plan or "", thought=thought)
        return ParsedTurn(
            "invalid",
            thought=thought,
            error=(
                "no action found. Write 'Action: <tool name>' and 'Action Input: <JSON object>', "
                "or finish with 'Action: finish' and 'Action Input: {\"answer\": ...}'"
            ),
        )
    tool = (steps[at].action_name or "").strip("`'\"*[]").strip()
    if tool.endswith(")") and "(" in tool:  # "search(query)" -> "search" (linear, no regex)
        tool = tool[: tool.index("(")].rstrip()
    at_input = first_with(steps, "action_input", at)
    if at_input is None:
        return ParsedTurn(
            "invalid",
            tool=tool,
            thought=thought,
            error=f"no 'Action Input:' after 'Action: {tool}'",
        )
    # the JSON may span lines; it ends at the next field (Observation, Thought, End Action, ...)
    args_text = steps[at_input].action_input or ""
    value, err = parse_json_object(args_text)
    if tool.lower() == FINISH:
        if err is not None:
            return ParsedTurn(
                "invalid", tool=FINISH, args_text=args_text, thought=thought, error=err
            )
        if isinstance(value, dict):
            if "answer" not in value:
                return ParsedTurn(
                    "invalid",
                    tool=FINISH,
                    args_text=args_text,
                    thought=thought,
                    error='finish needs {"answer": ...} as its Action Input',
                )
            value = value["answer"]
        return ParsedTurn("finish", tool=FINISH, answer=value, args_text=args_text, thought=thought)
    if err is not None:
        return ParsedTurn("invalid", tool=tool, args_text=args_text, thought=thought, error=err)
    if not isinstance(value, dict):
        return ParsedTurn(
            "invalid",
            tool=tool,
            args_text=args_text,
            thought=thought,
            error=f"Action Input must be a JSON object of arguments, got {args_text[:200]}",
        )
    return ParsedTurn("tool", tool=tool, args=value, args_text=args_text, thought=thought)


def format_turn(thought: str, tool: str, args: Mapping[str, Any] | Any) -> str:
    """The canonical ReAct text of one step (JSON arguments with sorted keys)."""
    return (
        f"Thought: {thought}\nAction: {tool}\n"
        f"Action Input: {json.dumps(args, ensure_ascii=False, sort_keys=True)}"
    )


def format_finish(answer: Any, thought: str = "I have enough information to answer.") -> str:
    """The canonical ReAct text of the final step."""
    return format_turn(thought, FINISH, {"answer": answer})


def system_prompt(tools: Iterable[Mapping[str, Any]], date: str | None = None) -> str:
    """The system message: the tools with their JSON schemas and the ReAct format.

    ``tools`` are dicts with ``name``, ``description`` and ``parameters`` (a :class:`Tool`'s
    attributes or ToolComp's function specs).
    """
    lines = [
        "You are a helpful assistant that answers questions by using tools."
        + (f" The current date is {date}." if date else ""),
        "",
        "TOOLS (name: description; arguments as a JSON schema):",
    ]
    for t in tools:
        params = json.dumps(t.get("parameters", {}), sort_keys=True, separators=(",", ":"))
        lines.append(f"- {t['name']}: {t.get('description', '')} Arguments: {params}")
    lines.append(
        f"- {FINISH}: give the final answer and end the task. Arguments: "
        + json.dumps(FINISH_SCHEMA, sort_keys=True, separators=(",", ":"))
    )
    lines += [
        "",
        "You may first write an action plan: a message starting with 'Action Plan:' and numbered "
        "steps naming the tools you will use. Then write one step per message, exactly in this "
        "format:",
        "Thought: <what you know and what to do next>",
        "Action: <one tool name>",
        "Action Input: <the arguments as a JSON object>",
        "",
        "After each step you receive 'Observation: <the tool output>'. When you know the answer:",
        "Thought: I have enough information to answer.",
        f"Action: {FINISH}",
        'Action Input: {"answer": <the final answer: a number, a short text, or a list>}',
        "",
        "Give temperatures in degrees Celsius, prices in US dollars and dates as YYYY-MM-DD.",
    ]
    return "\n".join(lines)


__all__ = [
    "FINISH",
    "FINISH_SCHEMA",
    "ParsedTurn",
    "format_finish",
    "format_turn",
    "loads_safely",
    "parse_json_object",
    "parse_turn",
    "system_prompt",
]
