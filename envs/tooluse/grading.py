"""The tool-use environment's final-answer grader: ToolComp's grading rules.

The rules live in the core, :mod:`agentq.eval.answers` (the ToolComp evaluation uses the same
grader); this module keeps the environment's import path. :func:`grade_answer` accepts an
answer when ToolComp counts it as accurate (``CORRECT`` or ``CORRECT BUT BAD FORMATTING``):
numbers within 10%, lists with the same items (nested lists too; ``{...}`` lists are ordered),
dates as days, yes/no, normalised strings; a prediction written as a string is read as the list
or number it spells.
"""

from __future__ import annotations

from agentq.eval.answers import (
    REL_TOL,
    OrderedList,
    grade_answer,
    normalize_text,
    numbers_close,
    parse_answer,
    parse_date,
    parse_number,
    toolcomp_grade,
)

__all__ = [
    "REL_TOL",
    "OrderedList",
    "grade_answer",
    "normalize_text",
    "numbers_close",
    "parse_answer",
    "parse_date",
    "parse_number",
    "toolcomp_grade",
]
