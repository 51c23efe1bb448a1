"""ToolComp's final-answer grading, made deterministic.

ToolComp (Nath et al., 2025) asks for final answers as a list written like Python, in the order
the question asks for the parts: ``['San Francisco', 78, ['Golden State Warriors', 'Los
Angeles Lakers']]``; a list whose order the question fixes ("in alphabetical order") is wrapped
in braces instead: ``[San Francisco, 78, {Golden State Warriors, Los Angeles Lakers}]``, and
items may be quoted or bare. Its grader (an LLM, ``grade/llm_grade.py``) gives one of three
grades and counts the first two as accurate:

``CORRECT``
    content and format match: numbers within 10%, the same list items (in the same order for a
    braced list), equivalent strings;
``CORRECT BUT BAD FORMATTING``
    the content matches but the form differs: natural language or extra text around the answer,
    a list written differently, a braced list in another order;
``INCORRECT``
    anything else (a number off by more than 10%, a different string).

:func:`toolcomp_grade` gives these grades by rule: :func:`parse_answer` reads the answer text
(nested lists; ``{...}`` as an :class:`OrderedList`; quoted or bare items), lists are matched
item by item (any order; a braced list in order for ``CORRECT``), numbers within
:data:`REL_TOL`, dates as days, yes/no as booleans, strings after normalisation (case,
accents, punctuation, articles). A prediction in prose is read for its list items (split on
commas, semicolons, new lines and "and") or its only number, which is at best
``CORRECT BUT BAD FORMATTING``. :func:`grade_answer` is True for both correct grades, as
ToolComp counts them; ``strict_order=True`` (a departure, not ToolComp's counting) also fails a
braced list given in another order.

Inputs are bounded: answers longer than :data:`MAX_ANSWER_CHARS` or nested deeper than
:data:`MAX_DEPTH` are graded as plain text, and numbers too large for a float are not numbers,
so a hostile answer cannot raise or hang the grader.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import string
import unicodedata
from collections.abc import Sequence
from typing import Any

REL_TOL = 0.10
"""Relative tolerance for numeric answers (ToolComp's "within 10%")."""
MAX_ANSWER_CHARS = 20_000
"""Answers longer than this are not parsed into lists or numbers (graded as text)."""
MAX_DEPTH = 16
"""Lists nested deeper than this are not parsed (the answer is graded as text)."""
MAX_ASSIGN_ITEMS = 200
"""Lists longer than this are compared in order (matching in any order would be quadratic)."""
MAX_NUMBER_CHARS = 64
"""A number written with more characters than this is not read as a number."""

CORRECT = "CORRECT"
BAD_FORMATTING = "CORRECT BUT BAD FORMATTING"
INCORRECT = "INCORRECT"
GRADES = (CORRECT, BAD_FORMATTING, INCORRECT)
"""ToolComp's three grades; the first two count as accurate."""

_NUM_RE = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_TRUE = {"yes", "true", "y", "correct"}
_FALSE = {"no", "false", "n", "incorrect"}
_SPLIT_RE = re.compile(r"\s*(?:,|;|\n|\band\b|&)\s*")


class OrderedList(list):  # type: ignore[type-arg]
    """A list whose order the question fixes: ToolComp's ``{...}`` marker."""

    def __repr__(self) -> str:
        return "{" + ", ".join(repr(x) for x in self) + "}"


# -- reading answers -------------------------------------------------------------------------


class _ParseError(ValueError):
    pass


def _bare_value(text: str) -> Any:
    t = text.strip()
    n = _plain_number(t)
    if n is not None:
        return int(n) if n.is_integer() and re.fullmatch(r"[-+]?\d+", t) else n
    return t


def _parse_seq(s: str, i: int, depth: int) -> tuple[list[Any], int]:
    if depth > MAX_DEPTH:
        raise _ParseError("too deep")
    closer = "]" if s[i] == "[" else "}"
    items: list[Any] = OrderedList() if closer == "}" else []
    i += 1
    while True:
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s):
            raise _ParseError("unclosed list")
        if s[i] == closer and not items:
            return items, i + 1
        item, i = _parse_item(s, i, depth + 1, closer)
        items.append(item)
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s):
            raise _ParseError("unclosed list")
        if s[i] == ",":
            i += 1
            continue
        if s[i] == closer:
            return items, i + 1
        raise _ParseError(f"unexpected {s[i]!r}")


def _parse_item(s: str, i: int, depth: int, closer: str) -> tuple[Any, int]:
    while i < len(s) and s[i].isspace():
        i += 1
    if i >= len(s):
        raise _ParseError("missing item")
    c = s[i]
    if c in "[{":
        return _parse_seq(s, i, depth)
    if c in "'\"":
        j = i + 1
        out = []
        while j < len(s) and s[j] != c:
            if s[j] == "\\" and j + 1 < len(s):
                j += 1
            out.append(s[j])
            j += 1
        if j >= len(s):
            raise _ParseError("unclosed quote")
        k = j + 1
        while k < len(s) and s[k].isspace():
            k += 1
        if k < len(s) and s[k] not in ",]}":
            raise _ParseError("text after a quoted item")
        return "".join(out), j + 1
    j = i
    while j < len(s) and s[j] not in ",]}[{":
        j += 1
    if j < len(s) and s[j] in "[{":
        raise _ParseError("bracket inside a bare item")
    return _bare_value(s[i:j]), j


def parse_list_text(text: str) -> list[Any] | None:
    """A ToolComp list answer (``[...]`` or ``{...}``, nested, items quoted or bare), else None."""
    s = text.strip()
    if not s or s[0] not in "[{" or len(s) > MAX_ANSWER_CHARS:
        return None
    try:
        value, end = _parse_seq(s, 0, 0)
    except (_ParseError, RecursionError):
        return None
    if s[end:].strip():
        return None
    return value


def parse_answer(value: Any) -> Any:
    """A ToolComp answer as a value: a (nested) list, a number, or the text itself.

    ``{...}`` becomes an :class:`OrderedList`; sets and tuples become lists; a string that is a
    list or a number is read as one; anything else is returned as it is.
    """
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, tuple):
        return list(value)
    if not isinstance(value, str):
        return value
    s = value.strip()
    as_list = parse_list_text(s)
    if as_list is not None:
        return as_list
    n = _plain_number(s)
    if n is not None:
        return int(n) if n.is_integer() and re.fullmatch(r"[-+]?\d+", s) else n
    return s


def extract_student_answer(response: Any) -> Any:
    """The answer inside ToolComp's ```json {"final_answer": ...}``` wrapper, as its grader reads it.

    A response without the wrapper is returned stripped; a non-string is returned as it is.
    """
    if response is None:
        return ""
    if not isinstance(response, str):
        return response
    r = response.strip()
    if not (r.startswith("```json") and r.endswith("```")):
        return r
    inner = r[len("```json") : -len("```")].strip()
    m = re.fullmatch(r'\{\s*"final_answer"\s*:\s*(.*)\}', inner, re.S)
    return m.group(1).strip() if m else inner


# -- scalars ---------------------------------------------------------------------------------


def normalize_text(s: Any) -> str:
    """Lower case, strip accents, punctuation, articles and extra white space."""
    text = unicodedata.normalize("NFKD", str(s))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _to_float(text: str) -> float | None:
    t = text.replace(",", "").replace("−", "-").strip()
    if not t or len(t) > MAX_NUMBER_CHARS:
        return None
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _plain_number(text: str) -> float | None:
    """The number a string is written as (``1,234.5``, ``-3``), or None."""
    t = text.strip()
    if not t or len(t) > MAX_NUMBER_CHARS or t.lower() in ("nan", "inf", "-inf", "infinity"):
        return None
    if not re.fullmatch(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?", t):
        return None
    return _to_float(t)


def parse_number(x: Any) -> float | None:
    """The number a value stands for: numbers as they are, text read for its only number.

    Text with several different numbers is ambiguous and gives None (a date like
    ``2024-03-05`` is not a number), and so does a number too large for a float.
    """
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        try:
            v = float(x)
        except OverflowError:
            return None
        return v if math.isfinite(v) else None
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if not isinstance(x, str):
        return None
    s = x.strip()
    if not s or len(s) > MAX_ANSWER_CHARS or parse_date(s) is not None:
        return None
    plain = _plain_number(s)
    if plain is not None:
        return plain
    values = {v for v in (_to_float(f) for f in _NUM_RE.findall(s)) if v is not None}
    return values.pop() if len(values) == 1 else None


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%B %d, %Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%B %d %Y",
    "%m/%d/%Y",
)


def parse_date(x: Any) -> dt.date | None:
    """A date written in one of the common formats, or None."""
    if isinstance(x, dt.date):
        return x
    if not isinstance(x, str) or len(x) > 100:
        return None
    s = " ".join(x.strip().rstrip(".").split())
    s = re.sub(
        r"^(monday|tuesday|wednesday|thursday|friday|saturday|sunday),?\s+", "", s, flags=re.I
    )
    s = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", s)
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    return None


def _as_bool(x: Any) -> bool | None:
    if isinstance(x, bool):
        return x
    if isinstance(x, str):
        n = normalize_text(x)
        if n in _TRUE:
            return True
        if n in _FALSE:
            return False
    return None


def numbers_close(pred: float, gold: float, rel_tol: float = REL_TOL) -> bool:
    """``pred`` within ``rel_tol`` relative error of ``gold`` (exact match for a gold of 0)."""
    if gold == 0:
        return abs(pred) <= 1e-9
    return abs(pred - gold) <= rel_tol * abs(gold) + 1e-12


# -- matching --------------------------------------------------------------------------------

_NO, _CONTENT, _EXACT = 0, 1, 2


def _match_scalar(p: Any, g: Any, tol: float) -> int:
    gb = g if isinstance(g, bool) else None
    if gb is None and isinstance(g, str) and normalize_text(g) in _TRUE | _FALSE:
        gb = _as_bool(g)
    if gb is not None:
        pb = _as_bool(p)
        if pb is None:
            return _NO
        return _EXACT if pb is gb else _NO
    gd = parse_date(g) if isinstance(g, str) else None
    if gd is not None:
        pd = parse_date(p) if isinstance(p, str) else None
        return _EXACT if pd == gd else _NO
    gn = parse_number(g)
    if gn is not None:
        if isinstance(p, (int, float)) and not isinstance(p, bool):
            pn = parse_number(p)
            return _EXACT if pn is not None and numbers_close(pn, gn, tol) else _NO
        if not isinstance(p, str):
            return _NO
        plain = _plain_number(p)
        if plain is not None:
            return _EXACT if numbers_close(plain, gn, tol) else _NO
        pn = parse_number(p)
        return _CONTENT if pn is not None and numbers_close(pn, gn, tol) else _NO
    if isinstance(p, (int, float, list)) and not isinstance(p, bool):
        return _NO
    ng = normalize_text(g)
    if not ng:  # the gold is only an article or punctuation: compare the plain text
        same = " ".join(str(p).lower().split()) == " ".join(str(g).lower().split())
        return _EXACT if same else _NO
    np_ = normalize_text(p)
    if np_ == ng:
        return _EXACT
    return _NO


def _assign(pred: Sequence[Any], gold: Sequence[Any], tol: float, depth: int) -> int:
    """Best grade of a one-to-one assignment of pred items to gold items (any order)."""
    n = len(gold)
    if n > MAX_ASSIGN_ITEMS:  # too many items to try every pairing: compare in order
        return min(
            (_match(p, g, tol, depth + 1) for p, g in zip(pred, gold, strict=True)), default=_EXACT
        )
    grades = [[_match(p, g, tol, depth + 1) for p in pred] for g in gold]
    for need in (_EXACT, _CONTENT):
        ok = [[x >= need for x in row] for row in grades]
        if _perfect_matching(ok):
            return need
    return _NO


def _perfect_matching(ok: list[list[bool]]) -> bool:
    """True when every row can take a distinct column it accepts (augmenting paths)."""
    n = len(ok)
    owner: list[int | None] = [None] * n

    def augment(row: int, seen: list[bool]) -> bool:
        for col in range(n):
            if ok[row][col] and not seen[col]:
                seen[col] = True
                o = owner[col]
                if o is None or augment(o, seen):
                    owner[col] = row
                    return True
        return False

    return all(augment(r, [False] * n) for r in range(n))


def _match(p: Any, g: Any, tol: float, depth: int = 0) -> int:
    if depth > MAX_DEPTH:
        return _NO
    if isinstance(g, list):
        if len(g) == 1 and not isinstance(p, list):
            inner = _match(p, g[0], tol, depth + 1)
            return min(inner, _CONTENT)
        formatted = isinstance(p, list)
        if isinstance(p, list):
            items = list(p)
        elif isinstance(p, str):
            if len(p) > MAX_ANSWER_CHARS:
                return _NO
            items = [x.strip().strip("'\"") for x in _SPLIT_RE.split(p.strip())]
            items = [x for x in items if x]
        else:
            return _NO
        if len(items) != len(g):
            return _NO
        if isinstance(g, OrderedList):
            in_order = [_match(pi, gi, tol, depth + 1) for pi, gi in zip(items, g, strict=True)]
            if all(x > _NO for x in in_order):
                grade = min(in_order)
                return grade if formatted else min(grade, _CONTENT)
            return min(_assign(items, g, tol, depth), _CONTENT)
        grade = _assign(items, g, tol, depth)
        return grade if formatted else min(grade, _CONTENT)
    if isinstance(p, list):
        if len(p) == 1:
            return min(_match(p[0], g, tol, depth + 1), _CONTENT)
        return _NO
    return _match_scalar(p, g, tol)


def toolcomp_grade(pred: Any, gold: Any, rel_tol: float = REL_TOL) -> str:
    """ToolComp's grade of a final answer: one of :data:`GRADES` (see the module docstring)."""
    if pred is None:
        return INCORRECT
    if isinstance(pred, dict) and "answer" in pred:
        pred = pred["answer"]
    p = parse_answer(extract_student_answer(pred))
    g = parse_answer(gold)
    m = _match(p, g, rel_tol)
    return CORRECT if m == _EXACT else BAD_FORMATTING if m == _CONTENT else INCORRECT


def _order_broken(p: Any, g: Any, tol: float) -> bool:
    """True when a braced gold list (at any depth) is matched only in another order."""
    if isinstance(g, OrderedList) and isinstance(p, list) and len(p) == len(g):
        if not all(_match(a, b, tol) > _NO for a, b in zip(p, g, strict=True)):
            return True
    if isinstance(g, list) and isinstance(p, list) and len(p) == len(g):
        return any(_order_broken(a, b, tol) for a, b in zip(p, g, strict=True))
    return False


def grade_answer(
    pred: Any, gold: Any, rel_tol: float = REL_TOL, *, strict_order: bool = False
) -> bool:
    """True when ToolComp counts ``pred`` as accurate (``CORRECT`` or ``CORRECT BUT BAD FORMATTING``).

    ``strict_order=True`` (not ToolComp's counting) also fails a braced ``{...}`` gold list
    whose items the prediction gives in another order.
    """
    if toolcomp_grade(pred, gold, rel_tol) == INCORRECT:
        return False
    if strict_order:
        p = parse_answer(extract_student_answer(pred["answer"] if isinstance(pred, dict) else pred))
        return not _order_broken(p, parse_answer(gold), rel_tol)
    return True


__all__ = [
    "BAD_FORMATTING",
    "CORRECT",
    "GRADES",
    "INCORRECT",
    "MAX_ANSWER_CHARS",
    "MAX_DEPTH",
    "OrderedList",
    "REL_TOL",
    "extract_student_answer",
    "grade_answer",
    "normalize_text",
    "numbers_close",
    "parse_answer",
    "parse_date",
    "parse_list_text",
    "parse_number",
    "toolcomp_grade",
]
