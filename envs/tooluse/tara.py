"""TARA's tools: the tool names and plain-text inputs of the TARA traces (Themis), executed for
real by the environment's tools, and the ``tara`` tool set of the tool-augmented reward model.

``calculator`` (which also checks GSM8K-style annotations ``<<expr=value>>``) and the three
``Calendar.*`` tools (``week_day``, ``day_difference``, ``target_day``) run the environment's
calculator and calendar. ``history_weather`` and TARA's ``wiki_search`` were live services in
Themis; offline they are :class:`~agentq.envs.tooluse.recorded.RecordedTool` objects that
replay the observations recorded in the TARA files (see ``docs/reward.md``).

:class:`TaraToolset` is registered as the ``tara`` entry point of ``agentq.toolsets``: the
core's reward model finds its tools and their executor by that name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agentq.envs.tooluse.executor import ToolExecutor
from agentq.envs.tooluse.recorded import RecordedTool
from agentq.envs.tooluse.tools import (
    TOOL_NAMES,
    Calculator,
    CalendarTool,
    Tool,
    ToolError,
    default_tools,
    format_number,
    safe_eval,
)

ANNOT_RE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
"""A GSM8K-style calculator annotation ``<<expr=value>>``."""
NUM_RE = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?|(?<![\w.])-?\.\d+")
"""A number as answers write it (``1,234.5``, ``-.5``)."""


def _split_args(text: str, n: int) -> list[str]:
    parts = [p.strip() for p in re.split(r"[,;]", str(text)) if p.strip()]
    if len(parts) != n:
        raise ToolError(f"expected {n} comma-separated values, got {text!r}")
    return parts


def to_number(text: str) -> float:
    """A number written with thousands commas, a dollar sign or a final full stop."""
    t = str(text).strip().replace(",", "").replace("$", "").rstrip(".")
    return float(t)


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    """``a`` and ``b`` equal up to a relative ``rel``."""
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def calculator_expression(expr: str) -> str:
    """An annotation's expression as the calculator reads it (``x`` as ``*``, no ``$`` or
    thousands commas, ``N%`` as ``(N/100)``)."""
    text = expr.strip().replace("x", "*").replace("X", "*").replace("$", "").replace(",", "")
    return re.sub(r"(\d)\s*%", r"(\1/100)", text)


class _TaraTool(Tool):
    """A tool taking TARA's plain-text ``Action Input`` (``"2020-06-10, 2000-01-10"``)."""

    parameters = {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "comma-separated values"}},
        "required": ["input"],
    }

    def run(self, args: Mapping[str, Any] | str | None = None) -> str:
        """Run on a plain string, ``{"input": ...}`` or a dict of named values."""
        if isinstance(args, Mapping):
            if "input" in args:
                text = str(args["input"])
            else:
                text = ", ".join(str(v) for v in args.values())
        else:
            text = "" if args is None else str(args)
        return self._call(input=text.strip())


class TaraWeekDay(_TaraTool):
    """``Calendar.week_day``: the weekday of a date (via the calendar tool)."""

    name = "Calendar.week_day"
    description = "The day of the week of a date. Action Input: YYYY-MM-DD"

    def __init__(self, calendar: Tool | None = None) -> None:
        self.calendar = calendar or CalendarTool()

    def _call(self, input: str) -> str:  # type: ignore[override]
        out = self.calendar.run({"operation": "weekday", "date": _split_args(input, 1)[0]})
        return out.rsplit(" ", 1)[-1]


class TaraDayDifference(_TaraTool):
    """``Calendar.day_difference``: days between two dates, as a non-negative number."""

    name = "Calendar.day_difference"
    description = "The number of days between two dates. Action Input: YYYY-MM-DD, YYYY-MM-DD"

    def __init__(self, calendar: Tool | None = None) -> None:
        self.calendar = calendar or CalendarTool()

    def _call(self, input: str) -> str:  # type: ignore[override]
        a, b = _split_args(input, 2)
        out = self.calendar.run({"operation": "days_between", "date": a, "end_date": b})
        return str(abs(int(out.split(" ", 1)[0])))


class TaraTargetDay(_TaraTool):
    """``Calendar.target_day``: the date a number of days (negative: before) after a date."""

    name = "Calendar.target_day"
    description = "The date N days after a date (N < 0: before). Action Input: YYYY-MM-DD, N"

    def __init__(self, calendar: Tool | None = None) -> None:
        self.calendar = calendar or CalendarTool()

    def _call(self, input: str) -> str:  # type: ignore[override]
        d, n = _split_args(input, 2)
        try:
            days = int(float(n))
        except ValueError:
            raise ToolError(f"number of days must be an integer, got {n!r}") from None
        out = self.calendar.run({"operation": "add_days", "date": d, "days": days})
        m = re.search(r"is (\d{4}-\d{2}-\d{2})", out)
        if not m:  # pragma: no cover - depends on the calendar tool's wording
            raise ToolError(f"unexpected calendar output {out!r}")
        return m.group(1)


class AnnotationCalculator(Tool):
    """``calculator`` that also checks GSM8K-style annotations ``<<expr=value>>``.

    A plain expression is evaluated as by the environment's calculator. An input with
    annotations (TARA's format) re-computes each one and says whether the stated value holds.
    """

    name = "calculator"
    description = (
        "Evaluate an arithmetic expression, or check calculations written as <<expr=value>> "
        "(several may be given, separated by commas)."
    )
    parameters = {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    }

    def __init__(self, calculator: Tool | None = None) -> None:
        self.calculator = calculator or Calculator()

    def _call(self, expression: str) -> str:  # type: ignore[override]
        annots = ANNOT_RE.findall(expression)
        if not annots:
            return self.calculator.run({"expression": expression})
        lines = []
        for expr, stated in annots:
            try:
                value = float(safe_eval(calculator_expression(expr)))
            except ToolError as e:
                lines.append(f"{expr.strip()}: error ({e})")
                continue
            try:
                ok = close(value, to_number(stated))
            except ValueError:
                ok = False
            verdict = "correct" if ok else "incorrect"
            lines.append(
                f"{expr.strip()} = {format_number(value)} (stated {stated.strip()}: {verdict})"
            )
        return "; ".join(lines)


#: TARA tools that were live services in Themis and are replayed from recordings offline.
RECORDED_TOOLS = ("history_weather", "wiki_search")


def tara_tools(include_env_tools: bool = True) -> dict[str, Tool]:
    """The verification tool set: TARA's tool names, then the environment's other tools.

    ``calculator`` and the three ``Calendar.*`` tools execute for real; ``history_weather``
    and ``wiki_search`` are :class:`RecordedTool` objects (empty until records are added, see
    :meth:`~agentq.envs.tooluse.executor.ToolExecutor.add_tara_records`); ``wiki_search`` falls back to the environment's
    local-corpus search when it has no record. With ``include_env_tools`` the other tools of
    :func:`agentq.envs.tooluse.tools.default_tools` that load here (``calendar``,
    ``python_interpreter``, ``weather``, ``stock``) are added under their own names.
    """
    cal = CalendarTool()
    env_tools: dict[str, Tool] = {}
    if include_env_tools:
        env_tools = _env_tools()
    tools: dict[str, Tool] = {
        "calculator": AnnotationCalculator(),
        "Calendar.week_day": TaraWeekDay(cal),
        "Calendar.day_difference": TaraDayDifference(cal),
        "Calendar.target_day": TaraTargetDay(cal),
        "history_weather": RecordedTool(
            "history_weather",
            "Historical weather of a city on a date. Action Input: City, YYYY-MM-DD",
        ),
        "wiki_search": RecordedTool(
            "wiki_search",
            "Search Wikipedia and return the best passage. Action Input: a search query",
            fuzzy=True,
            fallback=env_tools.get("wiki_search"),
        ),
    }
    for name, tool in env_tools.items():
        tools.setdefault(name, tool)
    return tools


def _env_tools() -> dict[str, Tool]:
    out: dict[str, Tool] = {}
    for name in TOOL_NAMES:
        try:
            out.update(default_tools(include=[name]))
        except Exception:  # shipped data missing: that tool is just not offered
            continue
    return out


class TaraToolset:
    """The ``tara`` tool set (:class:`agentq.models.reward.Toolset`): :func:`tara_tools` run by
    a :class:`~agentq.envs.tooluse.executor.ToolExecutor`."""

    def tools(self, *, include_env_tools: bool = True) -> dict[str, Tool]:
        """:func:`tara_tools`."""
        return tara_tools(include_env_tools)

    def executor(
        self, tools: Mapping[str, Any] | None = None, *, timeout_s: float = 10.0
    ) -> ToolExecutor:
        """A :class:`~agentq.envs.tooluse.executor.ToolExecutor` over ``tools`` (default
        :func:`tara_tools`)."""
        return ToolExecutor(tools, timeout_s=timeout_s)


__all__ = [
    "ANNOT_RE",
    "NUM_RE",
    "RECORDED_TOOLS",
    "AnnotationCalculator",
    "RecordedTool",
    "TaraDayDifference",
    "TaraTargetDay",
    "TaraToolset",
    "TaraWeekDay",
    "calculator_expression",
    "close",
    "tara_tools",
    "to_number",
]
