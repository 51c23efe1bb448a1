"""A deterministic final-answer grader in the ToolComp style.

:func:`grade_answer` accepts a prediction when it matches the gold answer:

- numbers: equal within 10% relative error (exactly equal when the gold is 0); a prediction in
  text is read for its number (``"$1,234.5"``, ``"about 12 °C"``, ``"35%"``);
- lists: the same items in any order (each item graded by these rules); a text prediction is
  split on commas, semicolons, new lines and ``and``;
- dates: the same day whatever the format (``2024-03-05``, ``March 5, 2024``);
- booleans: yes/no/true/false;
- strings: equal after normalisation (case, punctuation, articles, extra spaces), or the
  prediction is the gold plus a unit or trailing words only when the gold is numeric.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import string
import unicodedata
from typing import Any

REL_TOL = 0.10
"""Relative tolerance for numeric answers."""

_NUM_RE = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_TRUE = {"yes", "true", "y", "correct"}
_FALSE = {"no", "false", "n", "incorrect"}


def normalize_text(s: Any) -> str:
    """Lower case, strip accents, punctuation, articles and extra white space."""
    text = unicodedata.normalize("NFKD", str(s))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def parse_number(x: Any) -> float | None:
    """The number a value stands for: numbers as they are, text read for its only number.

    Text with several different numbers is ambiguous and gives None (a date like
    ``2024-03-05`` is not a number).
    """
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x) if math.isfinite(float(x)) else None
    if not isinstance(x, str):
        return None
    s = x.strip()
    if not s or parse_date(s) is not None:
        return None
    try:
        return float(s.replace(",", "").replace("−", "-"))
    except ValueError:
        pass
    found = _NUM_RE.findall(s)
    values = []
    for f in found:
        try:
            values.append(float(f.replace(",", "").replace("−", "-")))
        except ValueError:
            continue
    if not values:
        return None
    if len(set(values)) == 1:
        return values[0]
    return None


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
    if not isinstance(x, str):
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


def _as_list(x: Any) -> list[Any] | None:
    if isinstance(x, (list, tuple, set)):
        return list(x)
    if isinstance(x, str):
        s = x.strip()
        if s.startswith("["):
            try:
                v = json.loads(s)
                if isinstance(v, list):
                    return v
            except json.JSONDecodeError:
                pass
            s = s.strip("[]")
        parts = re.split(r"\s*(?:,|;|\n|\band\b|&)\s*", s)
        return [p.strip().strip("'\"") for p in parts if p.strip().strip("'\"")]
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


def grade_answer(pred: Any, gold: Any, rel_tol: float = REL_TOL) -> bool:
    """True when the predicted final answer matches the gold answer (see the module docstring)."""
    if pred is None:
        return False
    if isinstance(pred, dict) and "answer" in pred:
        pred = pred["answer"]
    if isinstance(gold, (list, tuple, set)):
        items = _as_list(pred)
        if items is None:
            return False
        gold_items = list(gold)
        if len(items) != len(gold_items):
            return False
        remaining = list(items)
        for g in gold_items:
            hit = next((i for i, p in enumerate(remaining) if grade_answer(p, g, rel_tol)), None)
            if hit is None:
                return False
            remaining.pop(hit)
        return True
    if isinstance(pred, (list, tuple)) and len(pred) == 1:
        pred = pred[0]
    gb = gold if isinstance(gold, bool) else None
    if gb is None and isinstance(gold, str) and normalize_text(gold) in _TRUE | _FALSE:
        gb = _as_bool(gold)
    if gb is not None:
        return _as_bool(pred) is gb
    gd = parse_date(gold) if isinstance(gold, str) else None
    if gd is not None:
        pd = parse_date(pred) if isinstance(pred, str) else None
        return pd == gd
    gn = parse_number(gold)
    if gn is not None:
        pn = parse_number(pred)
        return pn is not None and numbers_close(pn, gn, rel_tol)
    if isinstance(pred, (int, float)) and not isinstance(pred, bool):
        return False
    ng = normalize_text(gold)
    if not ng:  # the gold is only an article or punctuation: compare the plain text
        return " ".join(str(pred).lower().split()) == " ".join(str(gold).lower().split())
    return normalize_text(pred) == ng


__all__ = [
    "REL_TOL",
    "grade_answer",
    "normalize_text",
    "numbers_close",
    "parse_date",
    "parse_number",
]
