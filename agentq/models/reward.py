"""Tool-augmented reward models (Themis, Li et al., "Tool-Augmented Reward Modeling", ICLR 2024).

Two scorers live here, both ``agentq`` Scorers (``score(context, actions)``):

- :class:`ToolVerifyScorer` (spec ``tool-verify``): the non-learned baseline. It extracts the
  claims of a candidate that tools can check (calculator annotations ``<<expr=value>>`` and the
  final ``#### answer``, weekday / day-difference / target-day claims, weather facts, facts a
  search result can support), re-executes the tools, and scores the candidate by the share of
  its checkable claims that hold (``no_claim_score`` when it makes none).
- :class:`ToolAugmentedScorer` (spec ``rm:DIR``): the learned model. A causal LM with a scalar
  value head first writes a verification trace in ReAct form (``Thought:`` / ``Action:`` /
  ``Action Input:``), agentq executes each tool call and feeds back ``Observation:``, the model
  writes ``Rationale:``, and the score is the value head at the last token (or mean-pooled).
  Generation is batched across candidates; budgets bound tool calls, tokens and tool time.

Tools come from the tool-use environment (:mod:`agentq.envs.tooluse.tools`), plus adapters for
the tool names and input formats TARA uses (``Calendar.week_day``, ``Calendar.day_difference``,
``Calendar.target_day``, annotation checking for ``calculator``). ``history_weather`` and TARA's
``wiki_search`` were live services in Themis; offline they are :class:`RecordedTool` objects
that replay the observations recorded in the TARA files (see ``docs/reward.md``).
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentq.envs.tooluse.tools import (
    WEEKDAYS,
    Calculator,
    CalendarTool,
    Tool,
    ToolError,
    format_number,
    safe_eval,
)
from agentq.errors import ScorerError, UserInputError
from agentq.protocols import BaseScorer
from agentq.types import Context

# ============================================================================================
# TARA-dialect tools: the names and input formats of the TARA traces, executed for real
# ============================================================================================
_ANNOT_RE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
_NUM_RE = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?|(?<![\w.])-?\.\d+")


def _split_args(text: str, n: int) -> list[str]:
    parts = [p.strip() for p in re.split(r"[,;]", str(text)) if p.strip()]
    if len(parts) != n:
        raise ToolError(f"expected {n} comma-separated values, got {text!r}")
    return parts


def _to_number(text: str) -> float:
    t = str(text).strip().replace(",", "").replace("$", "").rstrip(".")
    return float(t)


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


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
        annots = _ANNOT_RE.findall(expression)
        if not annots:
            return self.calculator.run({"expression": expression})
        lines = []
        for expr, stated in annots:
            try:
                value = _eval_expr(expr)
            except ToolError as e:
                lines.append(f"{expr.strip()}: error ({e})")
                continue
            try:
                ok = _close(value, _to_number(stated))
            except ValueError:
                ok = False
            verdict = "correct" if ok else "incorrect"
            lines.append(
                f"{expr.strip()} = {format_number(value)} (stated {stated.strip()}: {verdict})"
            )
        return "; ".join(lines)


def _eval_expr(expr: str) -> float:
    text = expr.strip().replace("x", "*").replace("X", "*").replace("$", "").replace(",", "")
    text = re.sub(r"(\d)\s*%", r"(\1/100)", text)
    return float(safe_eval(text))


def _norm_key(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s-]", " ", str(text).lower())).strip()


class RecordedTool(Tool):
    """A tool that replays recorded observations (for services that cannot run offline).

    ``records`` maps an input text to the observation the live service gave. Lookup is exact
    after normalisation (case, punctuation, spaces); with ``fuzzy`` the most similar recorded
    input scoring at least ``min_similarity`` (rapidfuzz ``token_set_ratio``, 0-100) is used.
    Inputs with no record go to ``fallback`` (another tool) or raise :class:`ToolError`.
    """

    parameters = {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "required": ["input"],
    }

    def __init__(
        self,
        name: str,
        description: str = "",
        records: Mapping[str, str] | None = None,
        *,
        fuzzy: bool = False,
        min_similarity: float = 60.0,
        fallback: Tool | None = None,
    ) -> None:
        self.name = name
        self.description = description or f"{name} (recorded observations)"
        self.records: dict[str, str] = {}
        self.fuzzy = fuzzy
        self.min_similarity = min_similarity
        self.fallback = fallback
        self._lock = threading.Lock()
        for k, v in (records or {}).items():
            self.add(k, v)

    def add(self, key: str, observation: str) -> None:
        """Record ``observation`` as the answer to input ``key``."""
        with self._lock:
            self.records[_norm_key(key)] = observation

    def __len__(self) -> int:
        return len(self.records)

    def lookup(self, text: str) -> str | None:
        """The recorded observation for ``text`` (None when there is none)."""
        key = _norm_key(text)
        if key in self.records:
            return self.records[key]
        if self.fuzzy and self.records:
            from rapidfuzz import fuzz, process

            best = process.extractOne(key, list(self.records), scorer=fuzz.token_set_ratio)
            if best is not None and best[1] >= self.min_similarity:
                return self.records[best[0]]
        return None

    def run(self, args: Mapping[str, Any] | str | None = None) -> str:
        """Replay the observation for ``args`` (a string or a dict of values)."""
        if isinstance(args, Mapping):
            text = str(
                args.get("input", args.get("query", ", ".join(str(v) for v in args.values())))
            )
        else:
            text = "" if args is None else str(args)
        obs = self.lookup(text)
        if obs is not None:
            return obs
        if self.fallback is not None:
            return self.fallback.run(args)
        raise ToolError(f"no recorded {self.name} result for {text.strip()[:200]!r}")

    def _call(self, input: str) -> str:  # type: ignore[override]
        return self.run(input)


#: TARA tools that were live services in Themis and are replayed from recordings offline.
RECORDED_TOOLS = ("history_weather", "wiki_search")


def tara_tools(include_env_tools: bool = True) -> dict[str, Tool]:
    """The verification tool set: TARA's tool names, then the environment's other tools.

    ``calculator`` and the three ``Calendar.*`` tools execute for real; ``history_weather``
    and ``wiki_search`` are :class:`RecordedTool` objects (empty until records are added, see
    :meth:`ToolExecutor.add_tara_records`); ``wiki_search`` falls back to the environment's
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
    from agentq.envs.tooluse import tools as T

    out: dict[str, Tool] = {}
    for name in T.TOOL_NAMES:
        try:
            out.update(T.default_tools(include=[name]))
        except Exception:  # shipped data missing: that tool is just not offered
            continue
    return out


# ============================================================================================
# Executing tool calls: time limits, a per-run cache, bad calls as observations
# ============================================================================================
@dataclass
class ToolResult:
    """The outcome of one tool call."""

    observation: str
    ok: bool
    source: str = "tool"
    """``tool`` (executed), ``cache`` (an earlier identical call of this run), ``error``."""
    elapsed_s: float = 0.0


class ToolExecutor:
    """Runs tool calls by name with a time limit and caches results for the run.

    ``execute(name, action_input)`` never raises for a bad call: an unknown tool, bad
    arguments, a tool error or a timeout come back as an ``Error: ...`` observation with
    ``ok=False``. Identical calls (same tool, same normalised input) are answered from the cache.
    """

    def __init__(
        self,
        tools: Mapping[str, Tool] | None = None,
        *,
        timeout_s: float = 10.0,
        cache: bool = True,
        max_observation_chars: int = 2000,
    ) -> None:
        self.tools: dict[str, Tool] = dict(tools) if tools is not None else tara_tools()
        self.timeout_s = timeout_s
        self.use_cache = cache
        self.max_observation_chars = max_observation_chars
        self.cache: dict[tuple[str, str], ToolResult] = {}
        self.calls = 0
        self.cache_hits = 0
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def resolve(self, name: str) -> Tool | None:
        """The tool called ``name`` (exact, then case-insensitive, spaces as underscores)."""
        name = (name or "").strip().strip("`'\"")
        if name in self.tools:
            return self.tools[name]
        lowered = {k.lower(): v for k, v in self.tools.items()}
        return lowered.get(name.lower()) or lowered.get(name.lower().replace(" ", "_"))

    def execute(self, name: str, action_input: Any) -> ToolResult:
        """Run one call; see the class docstring."""
        text = (
            action_input
            if isinstance(action_input, str)
            else json.dumps(action_input, sort_keys=True)
        )
        key = (str(name).strip(), " ".join(text.split()))
        with self._lock:
            self.calls += 1
            hit = self.cache.get(key) if self.use_cache else None
            if hit is not None:
                self.cache_hits += 1
                return ToolResult(hit.observation, hit.ok, "cache", 0.0)
        result = self._run(name, action_input)
        if self.use_cache:
            with self._lock:
                self.cache[key] = result
        return result

    def _run(self, name: str, action_input: Any) -> ToolResult:
        tool = self.resolve(name)
        if tool is None:
            return ToolResult(
                f"Error: unknown tool {str(name).strip()[:80]!r}. Available tools: {', '.join(self.tools)}.",
                False,
                "error",
            )
        args: Any = action_input
        if isinstance(action_input, str):
            s = action_input.strip()
            if s.startswith("{"):
                try:
                    parsed = json.loads(s)
                except json.JSONDecodeError:
                    parsed = None
                if isinstance(parsed, dict):
                    args = parsed
        t0 = time.perf_counter()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="agentq-tool")
        fut = self._pool.submit(tool.run, args)
        try:
            obs = str(fut.result(timeout=self.timeout_s))
            ok = True
        except concurrent.futures.TimeoutError:
            obs, ok = f"Error: {tool.name} timed out after {self.timeout_s:g} s", False
        except ToolError as e:
            obs, ok = f"Error: {e}", False
        except Exception as e:  # a tool that raises is an observation, not a crash
            obs, ok = f"Error: tool {tool.name} failed: {type(e).__name__}: {e}", False
        if len(obs) > self.max_observation_chars:
            obs = obs[: self.max_observation_chars] + " ..."
        return ToolResult(obs, ok, "tool" if ok else "error", time.perf_counter() - t0)

    def add_records(self, tool_name: str, records: Mapping[str, str]) -> int:
        """Add recorded observations to the :class:`RecordedTool` called ``tool_name``."""
        tool = self.tools.get(tool_name)
        if not isinstance(tool, RecordedTool):
            return 0
        for k, v in records.items():
            tool.add(k, v)
        return len(records)

    def add_tara_records(self, pairs: Iterable[Any]) -> int:
        """Load the observations TARA recorded for the live services (:data:`RECORDED_TOOLS`).

        Only steps of tools that were live services are used; calculator and calendar steps
        are always re-executed. Returns the number of records added.
        """
        n = 0
        for p in pairs:
            for ans in (getattr(p, "pos", None), getattr(p, "neg", None)):
                for step in getattr(ans, "steps", []) or []:
                    if step.action in RECORDED_TOOLS and step.observation:
                        n += self.add_records(step.action, {step.action_input: step.observation})
        return n

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


# ============================================================================================
# Claims a tool can check
# ============================================================================================
@dataclass
class Claim:
    """One checkable claim of a candidate and what the tools said about it."""

    kind: str
    """``calculation``, ``final_answer``, ``weekday``, ``day_difference``, ``target_day``,
    ``weather`` or ``support``."""
    text: str
    holds: bool
    tool: str = ""
    observation: str = ""


@dataclass
class Verification:
    """All claims found in one candidate, and its score."""

    claims: list[Claim] = field(default_factory=list)
    score: float = 0.5

    @property
    def checked(self) -> int:
        """Number of checkable claims."""
        return len(self.claims)

    @property
    def held(self) -> int:
        """Number of claims that hold."""
        return sum(c.holds for c in self.claims)


_DATE_RE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_WEEKDAY_RE = re.compile(r"\b(" + "|".join(WEEKDAYS) + r")\b", re.IGNORECASE)
_FINAL_RE = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def _dates(text: str) -> list[tuple[str, int, int]]:
    out = []
    for m in _DATE_RE.finditer(text):
        try:
            d = _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
        out.append((d.isoformat(), m.start(), m.end()))
    return out


def _numbers_outside_dates(text: str) -> list[float]:
    spans = [(s, e) for _, s, e in _dates(text)]
    out = []
    for m in _NUM_RE.finditer(text):
        if any(s <= m.start() < e for s, e in spans):
            continue
        try:
            out.append(_to_number(m.group(0)))
        except ValueError:
            continue
    return out


def check_calculations(answer: str, ex: ToolExecutor) -> list[Claim]:
    """Claims of the calculator: each ``<<expr=value>>`` and the final ``#### answer``.

    Each annotation's expression is evaluated by the calculator tool; the claim holds when the
    stated value equals the result. The final answer (``#### X``) must equal the result of the
    last calculation. Expressions the calculator cannot read are not counted.
    """
    claims: list[Claim] = []
    last: float | None = None
    for m in _ANNOT_RE.finditer(answer):
        expr, stated = m.group(1), m.group(2)
        expr_text = (
            expr.strip().replace("x", "*").replace("X", "*").replace("$", "").replace(",", "")
        )
        expr_text = re.sub(r"(\d)\s*%", r"(\1/100)", expr_text)
        r = ex.execute("calculator", json.dumps({"expression": expr_text}))
        if not r.ok:
            continue
        try:
            value = _to_number(r.observation)
        except ValueError:
            continue
        last = value
        try:
            ok = _close(value, _to_number(stated))
        except ValueError:
            ok = False
        claims.append(Claim("calculation", m.group(0), ok, "calculator", r.observation))
    fm = _FINAL_RE.search(answer)
    if fm and last is not None:
        try:
            ok = _close(_to_number(fm.group(1)), last)
        except ValueError:
            ok = False
        claims.append(Claim("final_answer", fm.group(0), ok, "calculator", format_number(last)))
    return claims


def _direction(text: str) -> int | None:
    t = text.lower()
    if re.search(r"\b(before|earlier|ago|prior to|previous)\b", t):
        return -1
    if re.search(r"\b(after|later|from now|following|hence)\b", t):
        return 1
    return None


def check_calendar(question: str, answer: str, ex: ToolExecutor) -> list[Claim]:
    """Date claims, checked with the calendar tools.

    - a date with a weekday name next to it: the weekday of that date;
    - two dates and a number of days: their difference (signed by ``before``/``after`` when
      the sentence says which), i.e. a day-difference or a target-day claim;
    - the question gives a date and N days before/after, the answer one date: the target day;
    - the question gives two dates, the answer one number: the day difference.
    """
    claims: list[Claim] = []
    adates = _dates(answer)
    qdates = _dates(question)
    # weekday claims
    for m in _WEEKDAY_RE.finditer(answer):
        near = [d for d in adates if abs(d[1] - m.start()) <= 40 or abs(m.end() - d[2]) <= 40]
        if not near and len(qdates) == 1 and not adates and "week" in question.lower():
            near = qdates
        if not near:
            continue
        date = min(near, key=lambda d: min(abs(d[1] - m.start()), abs(m.end() - d[2])))[0]
        r = ex.execute("Calendar.week_day", date)
        if r.ok:
            claims.append(
                Claim(
                    "weekday",
                    f"{date} is {m.group(1)}",
                    r.observation.lower() == m.group(1).lower(),
                    "Calendar.week_day",
                    r.observation,
                )
            )
    if claims:
        return claims
    nums = [n for n in _numbers_outside_dates(answer) if n.is_integer()]
    qnums = [n for n in _numbers_outside_dates(question) if n.is_integer()]
    if len(adates) >= 2 and nums:
        d1, d2 = adates[0][0], adates[1][0]
        n = int(nums[-1])
        sign = _direction(answer[: adates[1][1]]) or _direction(question)
        r = ex.execute("Calendar.day_difference", f"{d1}, {d2}")
        if r.ok:
            diff = int(r.observation)
            if sign is not None and re.search(r"\b(before|after|later|earlier)\b", answer.lower()):
                t = ex.execute("Calendar.target_day", f"{d1}, {sign * n}")
                ok = t.ok and t.observation == d2
                claims.append(
                    Claim(
                        "target_day",
                        f"{d1} {sign * n:+d} days = {d2}",
                        ok,
                        "Calendar.target_day",
                        t.observation,
                    )
                )
            else:
                claims.append(
                    Claim(
                        "day_difference",
                        f"{d1} to {d2} is {n} days",
                        abs(n) == diff,
                        "Calendar.day_difference",
                        r.observation,
                    )
                )
        return claims
    if len(adates) == 1 and len(qdates) == 1 and qnums and adates[0][0] != qdates[0][0]:
        sign = _direction(question)
        if sign is not None:
            n = int(qnums[0])
            t = ex.execute("Calendar.target_day", f"{qdates[0][0]}, {sign * n}")
            if t.ok:
                claims.append(
                    Claim(
                        "target_day",
                        f"{qdates[0][0]} {sign * n:+d} days = {adates[0][0]}",
                        t.observation == adates[0][0],
                        "Calendar.target_day",
                        t.observation,
                    )
                )
        return claims
    if (
        not adates
        and len(qdates) == 2
        and len(nums) == 1
        and re.search(r"\bdays?\b|difference|between", question, re.I)
    ):
        r = ex.execute("Calendar.day_difference", f"{qdates[0][0]}, {qdates[1][0]}")
        if r.ok:
            claims.append(
                Claim(
                    "day_difference",
                    f"{int(nums[0])} days",
                    abs(int(nums[0])) == int(r.observation),
                    "Calendar.day_difference",
                    r.observation,
                )
            )
    return claims


WEATHER_FIELDS = (
    "overall weather",
    "temperature",
    "wind speed",
    "precipitation",
    "visibility",
    "humidity",
    "uv index",
)
_WEATHER_Q_RE = re.compile(
    r"\bin\s+(?P<city>[A-Z][\w'.\- ]*?)\s+on\s+(?:the\s+)?(?:(?P<n>\d+)\s+days?\s+(?P<dir>after|before)\s+)?"
    r"(?P<date>\d{4}-\d{2}-\d{2})",
)


def parse_weather_observation(obs: str) -> dict[str, str]:
    """``{"overall weather": "Cloudy", "temperature": "27.0(C)", ...}`` from a weather text."""
    out: dict[str, str] = {}
    body = obs.split(":", 1)[1] if re.match(r"^The weather for", obs) else obs
    for part in re.split(r";|\n", body):
        k, sep, v = part.partition(":")
        if sep and k.strip():
            out[k.strip().lower()] = v.strip().rstrip(".")
    return out


def check_weather(question: str, answer: str, ex: ToolExecutor) -> list[Claim]:
    """A weather fact: ``<field> in <City> on <date>`` (or N days after/before a date).

    The date is computed with the calendar tool when given relative to another date; the
    weather tool's record gives the field's true value; the claim holds when the answer states
    it (equal numbers for numeric fields, the condition's words for the overall weather).
    """
    m = _WEATHER_Q_RE.search(question)
    fld = next((f for f in WEATHER_FIELDS if f in question.lower()), None)
    if m is None or fld is None:
        return []
    city, date = m.group("city").strip(), m.group("date")
    if m.group("n"):
        sign = -1 if m.group("dir") == "before" else 1
        t = ex.execute("Calendar.target_day", f"{date}, {sign * int(m.group('n'))}")
        if not t.ok:
            return []
        date = t.observation
    r = ex.execute("history_weather", f"{city}, {date}")
    if not r.ok:
        return []
    values = parse_weather_observation(r.observation)
    key = next((k for k in values if k == fld or k.replace("uv", "uv") == fld), None)
    if key is None:
        return []
    truth = values[key]
    if fld == "overall weather":
        ok = _norm_key(truth) in _norm_key(answer)
    else:
        true_nums = [_to_number(x) for x in _NUM_RE.findall(truth)]
        ans = answer.replace(city, " ")
        if m.group("n"):
            ans = re.sub(rf"\b{m.group('n')}\s+days?\b", " ", ans)
        stated = _numbers_outside_dates(ans)
        if not stated:
            return []
        ok = any(_close(s, t) for s in stated for t in true_nums)
    return [Claim("weather", f"{fld} in {city} on {date}", ok, "history_weather", truth)]


_STOP = frozenset(
    "a an the of in on at to for from by with and or is are was were be been it its this that these those "
    "as who what when where which why how do does did he she they them his her their there than then also "
    "not no yes i you we our your has have had will would can could should may might into about over".split()
)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1}


def check_support(
    question: str, answer: str, ex: ToolExecutor, tool: str = "wiki_search"
) -> list[Claim]:
    """Facts a search result can support: each content word of the answer (not in the question).

    The question is the search query; a word of the answer holds when the retrieved text
    contains it.
    """
    words = _words(answer) - _words(question)
    if not words or ex.resolve(tool) is None:
        return []
    r = ex.execute(tool, question)
    if not r.ok:
        return []
    found = _words(r.observation)
    return [Claim("support", w, w in found, tool, "") for w in sorted(words)]


#: The claim checkers of :class:`ToolVerifyScorer`, in order.
CHECKERS: dict[str, Callable[[str, str, ToolExecutor], list[Claim]]] = {
    "calculator": lambda q, a, ex: check_calculations(a, ex),
    "calendar": check_calendar,
    "weather": check_weather,
}


def verify(
    question: str,
    answer: str,
    ex: ToolExecutor,
    *,
    support: bool = True,
    no_claim_score: float = 0.5,
) -> Verification:
    """All checkable claims of ``answer`` to ``question`` and the share that hold.

    The weather check runs first (its answers mention dates that are not calendar claims);
    then the calculator and calendar checks; the search-support check only when none of those
    found a claim.
    """
    claims = check_weather(question, answer, ex)
    if not claims:
        claims = check_calculations(answer, ex) + check_calendar(question, answer, ex)
    if not claims and support:
        claims = check_support(question, answer, ex)
    score = sum(c.holds for c in claims) / len(claims) if claims else no_claim_score
    return Verification(claims, score)


def _question(context: Context) -> str:
    """The text a candidate answers: the user message of a one-question context, else the
    conversation as ``role: content`` lines (system messages left out)."""
    msgs = [m for m in context if m.get("role") != "system" and m.get("content")]
    if len(msgs) == 1:
        return str(msgs[0]["content"])
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in msgs)


class ToolVerifyScorer(BaseScorer):
    """The non-learned tool-verification scorer (spec ``tool-verify``).

    Scores each candidate by the share of its checkable claims that hold when the tools
    re-execute them (see :func:`verify`); a candidate with no checkable claim scores
    ``no_claim_score``. The question is the context's user message (a longer conversation is used whole). Tool results
    are cached for the scorer's lifetime. ``prepare_pairs(pairs)`` (called by
    :func:`agentq.data.tara.pairwise_accuracy`) loads TARA's recorded observations for the
    services that cannot run offline when ``use_recorded`` is True.
    """

    def __init__(
        self,
        tools: Mapping[str, Tool] | None = None,
        *,
        timeout_s: float = 10.0,
        no_claim_score: float = 0.5,
        support: bool = True,
        use_recorded: bool = True,
        **_: Any,
    ) -> None:
        self.executor = ToolExecutor(tools, timeout_s=timeout_s)
        self.no_claim_score = no_claim_score
        self.support = support
        self.use_recorded = use_recorded
        self.last_verifications: list[Verification] = []

    def prepare_pairs(self, pairs: Sequence[Any]) -> int:
        """Load recorded live-service observations from TARA pairs (when ``use_recorded``)."""
        if not self.use_recorded:
            return 0
        return self.executor.add_tara_records(pairs)

    def verify(self, context: Context, action: str) -> Verification:
        """The claims of one candidate and its score."""
        return verify(
            _question(context),
            action,
            self.executor,
            support=self.support,
            no_claim_score=self.no_claim_score,
        )

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """One score in [0, 1] per candidate (the share of its checkable claims that hold)."""
        vs = [self.verify(context, a) for a in actions]
        self.last_verifications = vs
        return [v.score for v in vs]


# ============================================================================================
# The learned tool-augmented reward model
# ============================================================================================
RM_CONFIG_FILE = "reward_model.json"
VALUE_HEAD_FILE = "value_head.safetensors"
RM_FORMAT = "agentq-reward-model"
RM_FORMAT_VERSION = 1
POOLINGS = ("last", "mean")
TRACE_MODES = ("generate", "none")

RM_SYSTEM_PROMPT = (
    "You are a reward model that checks an answer with tools before judging it. "
    "Verify the answer step by step: write 'Thought: ...', 'Action: <tool name>' and "
    "'Action Input: <input>' on separate lines, then stop; the tool's result comes back as "
    "'Observation: ...'. When you have checked enough, write 'Rationale: ...' saying whether "
    "the answer is correct and why.\nTools:\n{tools}"
)
OBSERVATION = "Observation:"
RATIONALE = "Rationale:"


@dataclass
class RMBudget:
    """Budgets of one candidate's verification trace."""

    max_tool_calls: int = 3
    max_new_tokens: int = 256
    """Generated tokens per candidate, all rounds together."""
    max_segment_tokens: int = 128
    """Generated tokens per round (between two observations)."""
    tool_timeout_s: float = 10.0
    max_observation_chars: int = 400

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dict(self.__dict__)


@dataclass
class TraceStep:
    """One executed tool call of a generated trace."""

    action: str
    action_input: str
    observation: str
    ok: bool
    source: str = "tool"


@dataclass
class RMTrace:
    """The verification trace of one candidate: model text and observations, in order."""

    segments: list[tuple[str, str]] = field(default_factory=list)
    """``(kind, text)`` with kind ``model`` or ``observation``."""
    steps: list[TraceStep] = field(default_factory=list)
    generated_tokens: int = 0
    finished: bool = False
    budget_hit: str | None = None
    """``tool_calls`` or ``tokens`` when a budget cut the trace (it is scored as it stands)."""
    invalid_calls: int = 0
    score: float | None = None

    @property
    def text(self) -> str:
        """The whole trace as text."""
        return "".join(t for _, t in self.segments)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "text": self.text,
            "steps": [s.__dict__ for s in self.steps],
            "generated_tokens": self.generated_tokens,
            "finished": self.finished,
            "budget_hit": self.budget_hit,
            "invalid_calls": self.invalid_calls,
            "score": self.score,
        }


def tool_descriptions(tools: Mapping[str, Tool]) -> str:
    """One line per tool: ``- name: description``."""
    return "\n".join(f"- {name}: {t.description}" for name, t in tools.items())


def rm_messages(
    question: str, answer: str, tools_text: str, system_prompt: str = RM_SYSTEM_PROMPT
) -> Context:
    """The reward model's prompt messages for one (question, answer).

    A question that carries a TARA ``context`` (``Context: ...\nQuestion: ...``, as Themis
    prepends it) keeps it on the line before ``Question:``.
    """
    from agentq.data.tara import split_context

    ctx, q = split_context(question)
    head = f"Context: {ctx}\n" if ctx is not None else ""
    return [
        {"role": "system", "content": system_prompt.format(tools=tools_text)},
        {"role": "user", "content": f"{head}Question: {q}\nAnswer: {answer}"},
    ]


def step_segments(
    steps: Sequence[Any], rationale: str | None, max_observation_chars: int = 400
) -> list[tuple[str, str]]:
    """Trace segments of recorded steps (objects with ``thought``, ``action``,
    ``action_input``, ``observation``) and a rationale, in the text form the model generates."""
    segs: list[tuple[str, str]] = []
    for s in steps:
        head = f"Thought: {s.thought}\n" if getattr(s, "thought", "") else ""
        segs.append(
            ("model", f"{head}Action: {s.action}\nAction Input: {s.action_input}\n{OBSERVATION}")
        )
        obs = (s.observation or "").strip()
        if len(obs) > max_observation_chars:
            obs = obs[:max_observation_chars] + " ..."
        segs.append(("observation", f" {obs}\n"))
    if rationale is not None:
        segs.append(("rationale", f"{RATIONALE} {rationale.strip()}"))
    return segs


def encode_trace(
    tokenizer: Any,
    messages: Context,
    segments: Sequence[tuple[str, str]],
    *,
    max_length: int | None = None,
    add_eos: bool = True,
) -> tuple[list[int], list[str]]:
    """Token ids of prompt + trace segments (+ EOS), and the kind of each token.

    Kinds: ``prompt``, ``model`` (tool-call text), ``observation``, ``rationale``, ``eos``.
    Each segment is encoded on its own, exactly as during generation, so training and scoring
    see the same tokens. Longer than ``max_length``: the prompt is cut from the left.
    """
    from agentq.render import _as_ids

    prompt = _as_ids(
        tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
    )
    ids = list(prompt)
    kinds = ["prompt"] * len(prompt)
    for kind, text in segments:
        seg = tokenizer.encode(text, add_special_tokens=False)
        ids.extend(seg)
        kinds.extend([kind] * len(seg))
    if add_eos and tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
        kinds.append("eos")
    if max_length is not None and len(ids) > max_length:
        ids, kinds = ids[-max_length:], kinds[-max_length:]
    return ids, kinds


_ACTION_RE = re.compile(r"Action\s*:\s*(.*)")
_INPUT_RE = re.compile(r"Action Input\s*:\s*(.*)", re.DOTALL)


def parse_tool_call(text: str) -> tuple[str, str] | None:
    """The last ``Action:`` / ``Action Input:`` of a generated segment (None when absent)."""
    body = text[: text.rfind(OBSERVATION)] if OBSERVATION in text else text
    idx = body.rfind("Action:")
    if idx < 0:
        return None
    part = body[idx:]
    m = _ACTION_RE.match(part)
    mi = _INPUT_RE.search(part)
    if m is None or mi is None:
        return None
    return m.group(1).strip(), mi.group(1).strip()


class ToolAugmentedRewardModel:
    """A causal LM (optionally with a LoRA adapter) plus a scalar value head (Themis).

    ``score_candidates`` writes a verification trace per candidate (batched generation across
    candidates, tool calls executed by a :class:`ToolExecutor` and fed back as observations),
    then reads the value head at the last token (``pooling="last"``) or averaged over the
    non-padding tokens (``pooling="mean"``).

    ``generator`` may replace the LM's own generation: a callable ``(list of token-id lists,
    max_new_tokens) -> list of texts`` (scripted traces in tests, a remote server).

    ``prefix_cache`` (default True: the process-wide
    :func:`~agentq.models.prefix_cache.shared_prefix_cache`) lets the value pass with
    ``pooling="last"`` start each sequence from its longest cached prefix (the system prompt,
    tools and question recur across candidates and calls); ``pooling="mean"`` needs every
    token's hidden state, which a KV cache does not keep, so it runs uncached, and so does
    trace generation (many different prompts left-padded into one ``generate``).
    """

    def __init__(
        self,
        lm: Any,
        tokenizer: Any,
        *,
        value_head: Any = None,
        pooling: str = "last",
        max_length: int = 1024,
        budget: RMBudget | None = None,
        tools: Mapping[str, Tool] | None = None,
        system_prompt: str = RM_SYSTEM_PROMPT,
        generator: Callable[[list[list[int]], int], list[str]] | None = None,
        prefix_cache: Any = True,
        cache_bytes: Any = None,
    ) -> None:
        import torch

        from agentq.models.prefix_cache import CacheStats, resolve_prefix_cache

        if pooling not in POOLINGS:
            raise UserInputError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        self.lm = lm
        self.tokenizer = tokenizer
        hidden = int(
            getattr(lm.config, "hidden_size", 0) or lm.get_input_embeddings().weight.shape[1]
        )
        if value_head is None:
            value_head = torch.nn.Linear(hidden, 1)
            torch.nn.init.normal_(value_head.weight, std=1.0 / math.sqrt(hidden + 1))
            torch.nn.init.zeros_(value_head.bias)
        dev = next(lm.parameters()).device
        self.value_head = value_head.to(device=dev, dtype=torch.float32)
        self.pooling = pooling
        self.max_length = max_length
        self.budget = budget or RMBudget()
        self.tools = dict(tools) if tools is not None else tara_tools()
        self.system_prompt = system_prompt
        self.generator = generator
        self.last_traces: list[RMTrace] = []
        self.prefix_cache = resolve_prefix_cache(prefix_cache, cache_bytes)
        self.cache_stats = CacheStats()
        """The value pass's prefix-cache use (tokens reused and computed)."""

    @property
    def device(self) -> Any:
        """The LM's device."""
        return next(self.lm.parameters()).device

    def messages(self, question: str, answer: str) -> Context:
        """The prompt messages for one candidate."""
        return rm_messages(question, answer, tool_descriptions(self.tools), self.system_prompt)

    # -- values ----------------------------------------------------------------------------
    def values(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
        """``(values [B], logits [B, T, V])`` for right-padded inputs."""
        import torch

        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        h = out.hidden_states[-1].float()
        if self.pooling == "mean":
            m = attention_mask.unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        else:
            last = attention_mask.long().sum(1) - 1
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        return self.value_head(pooled).squeeze(-1), out.logits

    def value_of(self, sequences: Sequence[Sequence[int]], batch_size: int = 8) -> list[float]:
        """Values of whole token sequences (no grad)."""
        import torch

        out: list[float] = []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        cached = (
            self.prefix_cache is not None
            and self.pooling == "last"
            and not self.lm.training
            and all(len(s) for s in sequences)
        )
        with torch.no_grad():
            for i in range(0, len(sequences), batch_size):
                chunk = sequences[i : i + batch_size]
                if cached:
                    out.extend(self._cached_values(chunk, pad))
                    continue
                ids, mask = pad_right(chunk, pad, self.device)
                v, _ = self.values(ids, mask)
                out.extend(float(x) for x in v.tolist())
        return out

    def _cached_values(self, chunk: Sequence[Sequence[int]], pad: int) -> list[float]:
        """``pooling="last"`` values of ``chunk``, each sequence from its cached prefix."""
        import torch

        from agentq.models.prefix_cache import cached_prefill

        pre = cached_prefill(
            self.lm,
            [list(s) for s in chunk],
            cache=self.prefix_cache,
            stats=self.cache_stats,
            pad_id=pad,
            output_hidden_states=True,
            logits_to_keep=1,
        )
        h = pre.output.hidden_states[-1].float()
        rows = torch.arange(h.shape[0], device=h.device)
        pooled = h[rows, torch.tensor(pre.last_index, device=h.device)]
        return [float(x) for x in self.value_head(pooled).squeeze(-1).tolist()]

    # -- generation ------------------------------------------------------------------------
    def _generate(self, batch: list[list[int]], max_new: int) -> list[tuple[str, int]]:
        """Greedy generation for a batch of prompts (left-padded), stopping each row at
        ``Observation:`` or EOS. Returns ``(text, n_tokens)`` per row."""
        if self.generator is not None:
            texts = self.generator(batch, max_new)
            return [(t, len(self.tokenizer.encode(t, add_special_tokens=False))) for t in texts]
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            ids[i, width - len(b) :] = torch.tensor(b, dtype=torch.long)
            mask[i, width - len(b) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)

        class _StopAtObservation(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                tails = tok.batch_decode(input_ids[:, width:][:, -24:], skip_special_tokens=False)
                return torch.tensor([OBSERVATION in t for t in tails], device=input_ids.device)

        with torch.no_grad():
            out = self.lm.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([_StopAtObservation()]),
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
            )
        res = []
        for row in out[:, width:].tolist():
            n = 0
            kept: list[int] = []
            for t in row:
                n += 1
                if t == tok.eos_token_id:
                    break
                if t == pad and pad != tok.eos_token_id:
                    break
                kept.append(t)
            res.append((tok.decode(kept, skip_special_tokens=True), n))
        return res

    def generate_traces(
        self,
        items: Sequence[tuple[str, str]],
        executor: ToolExecutor,
        budget: RMBudget | None = None,
    ) -> list[RMTrace]:
        """Write, execute and finish the verification trace of each (question, answer).

        All unfinished candidates generate together in each round; each round ends at an
        ``Observation:`` (the tool call is executed and its result appended) or at EOS /
        ``Rationale:`` text (the trace is finished). Budgets cut a trace, which is then scored
        as it stands, with ``budget_hit`` set.
        """
        b = budget or self.budget
        traces = [RMTrace() for _ in items]
        msgs = [self.messages(q, a) for q, a in items]
        active = list(range(len(items)))
        while active:
            batch, rows = [], []
            for i in active:
                remaining = b.max_new_tokens - traces[i].generated_tokens
                if remaining <= 0:
                    traces[i].budget_hit = "tokens"
                    continue
                ids, _ = encode_trace(
                    self.tokenizer,
                    msgs[i],
                    traces[i].segments,
                    add_eos=False,
                    max_length=self.max_length,
                )
                batch.append(ids)
                rows.append(i)
            if not rows:
                break
            max_new = max(
                1,
                min(
                    b.max_segment_tokens,
                    min(b.max_new_tokens - traces[i].generated_tokens for i in rows),
                ),
            )
            outs = self._generate(batch, max_new)
            still: list[int] = []
            for i, (text, n) in zip(rows, outs, strict=True):
                tr = traces[i]
                tr.generated_tokens += n
                if OBSERVATION in text:
                    text = text[: text.index(OBSERVATION) + len(OBSERVATION)]
                    tr.segments.append(("model", text))
                    if len(tr.steps) >= b.max_tool_calls:
                        tr.budget_hit = "tool_calls"
                        continue
                    call = parse_tool_call(text)
                    if call is None:
                        res = ToolResult(
                            "Error: no 'Action:' and 'Action Input:' before 'Observation:'",
                            False,
                            "error",
                        )
                        name, arg = "", ""
                    else:
                        name, arg = call
                        res = executor.execute(name, arg)
                    if not res.ok:
                        tr.invalid_calls += 1
                    obs = res.observation
                    if len(obs) > b.max_observation_chars:
                        obs = obs[: b.max_observation_chars] + " ..."
                    tr.segments.append(("observation", f" {obs}\n"))
                    tr.steps.append(TraceStep(name, arg, obs, res.ok, res.source))
                    if tr.generated_tokens >= b.max_new_tokens:
                        tr.budget_hit = "tokens"
                        continue
                    still.append(i)
                else:
                    tr.segments.append(("rationale" if RATIONALE in text else "model", text))
                    if n >= max_new and tr.generated_tokens >= b.max_new_tokens:
                        tr.budget_hit = "tokens"
                    elif n >= max_new:  # cut by the per-round cap: keep writing next round
                        still.append(i)
                        continue
                    tr.finished = tr.budget_hit is None
            active = still
        return traces

    def score_candidates(
        self,
        question: str,
        answers: Sequence[str],
        executor: ToolExecutor | None = None,
        *,
        trace: str = "generate",
        budget: RMBudget | None = None,
    ) -> list[float]:
        """Scores of ``answers`` to ``question``; traces are kept in ``last_traces``."""
        return self.score_items(
            [(question, a) for a in answers], executor, trace=trace, budget=budget
        )

    def score_items(
        self,
        items: Sequence[tuple[str, str]],
        executor: ToolExecutor | None = None,
        *,
        trace: str = "generate",
        budget: RMBudget | None = None,
    ) -> list[float]:
        """Scores of several (question, answer) items, generation batched across all of them."""
        if not items:
            self.last_traces = []
            return []
        if trace not in TRACE_MODES:
            raise UserInputError(f"trace must be one of {', '.join(TRACE_MODES)}, not {trace!r}")
        ex = executor or ToolExecutor(self.tools, timeout_s=(budget or self.budget).tool_timeout_s)
        if trace == "generate":
            traces = self.generate_traces(items, ex, budget)
        else:
            traces = [RMTrace(finished=True) for _ in items]
        seqs = [
            encode_trace(
                self.tokenizer, self.messages(q, a), tr.segments, max_length=self.max_length
            )[0]
            for (q, a), tr in zip(items, traces, strict=True)
        ]
        vals = self.value_of(seqs)
        for tr, v in zip(traces, vals, strict=True):
            tr.score = v
        self.last_traces = traces
        return vals

    # -- persistence -----------------------------------------------------------------------
    def save(
        self, directory: str | Path, *, base_model: str, extra: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the adapter (when the LM is a peft model), the value head and the JSON config."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if hasattr(self.lm, "peft_config"):
            self.lm.save_pretrained(d, safe_serialization=True)
        sd = {
            k: v.detach().float().cpu().contiguous()
            for k, v in self.value_head.state_dict().items()
        }
        save_file(sd, str(d / VALUE_HEAD_FILE))
        from agentq.models.qmodel import agentq_version, config_fingerprint

        doc: dict[str, Any] = {
            "format": RM_FORMAT,
            "format_version": RM_FORMAT_VERSION,
            "base_model": base_model,
            "base_fingerprint": config_fingerprint(getattr(self.lm, "config", None)),
            "adapter": hasattr(self.lm, "peft_config"),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "hidden_size": int(self.value_head.in_features),
            "budget": self.budget.to_dict(),
            "tools": list(self.tools),
            "system_prompt": self.system_prompt,
            "chat_template": getattr(self.tokenizer, "chat_template", None),
            "agentq_version": agentq_version(),
        }
        doc.update(dict(extra or {}))
        (d / RM_CONFIG_FILE).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        return d


def pad_right(seqs: Sequence[Sequence[int]], pad: int, device: Any = None) -> tuple[Any, Any]:
    """Right-padded ``(input_ids, attention_mask)`` tensors."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def read_rm_config(directory: str | Path) -> dict[str, Any]:
    """Read ``reward_model.json``; ``UserInputError`` naming what is missing or wrong."""
    from agentq.models.qmodel import read_model_json

    d = Path(directory)
    doc = read_model_json(d, RM_CONFIG_FILE, RM_FORMAT, "reward model")
    if not (d / VALUE_HEAD_FILE).is_file():
        raise UserInputError(f"{d}: value head file {VALUE_HEAD_FILE} is missing")
    if doc.get("adapter") and not (d / "adapter_config.json").is_file():
        raise UserInputError(
            f"{d}: adapter_config.json is missing (the LoRA adapter was not saved)"
        )
    return dict(doc)


def load_reward_model(
    directory: str | Path,
    *,
    device: str | None = None,
    dtype: Any = None,
    base_model: str | None = None,
    pooling: str | None = None,
) -> ToolAugmentedRewardModel:
    """Load a reward model directory written by :meth:`ToolAugmentedRewardModel.save`."""
    import torch
    from safetensors.torch import load_file

    from agentq.models.loading import load_causal_lm
    from agentq.models.qmodel import config_fingerprint

    d = Path(directory)
    doc = read_rm_config(d)
    base = base_model or doc["base_model"]
    lm, tok = load_causal_lm(base, device=device, dtype=dtype)
    fp = doc.get("base_fingerprint") or {}
    have = config_fingerprint(lm.config)
    bad = {k: (v, have.get(k)) for k, v in fp.items() if v is not None and have.get(k) != v}
    if bad:
        raise UserInputError(
            f"{d}: base model {base!r} does not match the one it was trained on: {bad}"
        )
    if doc.get("adapter"):
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, str(d))
        lm.eval()
    head = torch.nn.Linear(int(doc["hidden_size"]), 1)
    try:
        head.load_state_dict(load_file(str(d / VALUE_HEAD_FILE)))
    except RuntimeError as e:
        raise UserInputError(f"{d}: value head does not fit the model: {e}") from e
    available = tara_tools()
    names = doc.get("tools") or list(available)
    missing = [n for n in names if n not in available]
    if missing:
        raise UserInputError(f"{d}: tools {missing} used in training are not available here")
    tools = {n: available[n] for n in names}
    bdoc = doc.get("budget") or {}
    budget = RMBudget(**{k: v for k, v in bdoc.items() if k in RMBudget.__dataclass_fields__})
    return ToolAugmentedRewardModel(
        lm,
        tok,
        value_head=head,
        pooling=pooling or doc.get("pooling", "last"),
        max_length=int(doc.get("max_length", 1024)),
        budget=budget,
        system_prompt=doc.get("system_prompt", RM_SYSTEM_PROMPT),
        tools=tools,
    )


class ToolAugmentedScorer(BaseScorer):
    """A :class:`ToolAugmentedRewardModel` as a Scorer (spec ``rm:DIR``).

    ``score(context, actions)`` verifies every candidate with tools (one batched generation
    across the candidates, or across all items of ``score_batch``) and returns the value-head
    scores. ``trace="none"`` skips the trace (a plain reward model on question + answer). Tool
    results are cached for the scorer's lifetime; ``last_traces`` holds the traces of the last
    call (with ``budget_hit`` flags). ``prepare_pairs`` loads TARA's recorded observations of
    live services, as for :class:`ToolVerifyScorer`.
    """

    def __init__(
        self,
        model: ToolAugmentedRewardModel,
        *,
        trace: str = "generate",
        budget: RMBudget | None = None,
        use_recorded: bool = True,
    ) -> None:
        if trace not in TRACE_MODES:
            raise UserInputError(f"trace must be one of {', '.join(TRACE_MODES)}, not {trace!r}")
        self.model = model
        self.trace = trace
        self.budget = budget or model.budget
        self.use_recorded = use_recorded
        self.executor = ToolExecutor(model.tools, timeout_s=self.budget.tool_timeout_s)
        self.last_traces: list[RMTrace] = []

    def prepare_pairs(self, pairs: Sequence[Any]) -> int:
        """Load recorded live-service observations from TARA pairs (when ``use_recorded``)."""
        return self.executor.add_tara_records(pairs) if self.use_recorded else 0

    def stats(self) -> dict[str, Any]:
        """The value pass's prefix-cache use and the cache's bytes and budget."""
        d = self.model.cache_stats.to_dict()
        cache = self.model.prefix_cache
        d["cache"] = cache.stats() if cache is not None else None
        return d

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """One value-head score per candidate (higher is better)."""
        return self.score_batch([(context, actions)])[0]

    def score_batch(self, items: Sequence[tuple[Context, Sequence[str]]]) -> list[list[float]]:
        """Score several (context, actions) items with one batched generation."""
        flat = [(_question(ctx), a) for ctx, acts in items for a in acts]
        try:
            vals = self.model.score_items(flat, self.executor, trace=self.trace, budget=self.budget)
        except UserInputError:
            raise
        except Exception as e:
            raise ScorerError(f"reward model failed: {type(e).__name__}: {e}") from e
        self.last_traces = list(self.model.last_traces)
        out: list[list[float]] = []
        i = 0
        for _, acts in items:
            out.append(vals[i : i + len(acts)])
            i += len(acts)
        return out


def scorer_from_spec(directory: str, **options: Any) -> ToolAugmentedScorer:
    """Build the scorer of spec ``rm:DIR``.

    Options: ``device``, ``dtype``, ``base_model`` (override), ``pooling`` (``last``/``mean``),
    ``trace`` (``generate``/``none``), ``max_tool_calls``, ``max_new_tokens``,
    ``max_segment_tokens``, ``tool_timeout_s``, ``use_recorded``, ``prefix_cache``
    (true/false) and ``cache_bytes`` (its budget). Unknown options (such as ``seed``) are
    ignored.
    """
    from agentq.models.prefix_cache import parse_cache_bytes, resolve_prefix_cache

    if options.get("cache_bytes") is not None:  # bad input before the model loads
        parse_cache_bytes(options["cache_bytes"])
    rm = load_reward_model(
        directory,
        device=options.get("device"),
        dtype=options.get("dtype"),
        base_model=options.get("base_model"),
        pooling=options.get("pooling"),
    )
    rm.prefix_cache = resolve_prefix_cache(
        options.get("prefix_cache", True), options.get("cache_bytes")
    )
    b = RMBudget(**rm.budget.to_dict())
    for k in ("max_tool_calls", "max_new_tokens", "max_segment_tokens", "tool_timeout_s"):
        if options.get(k) is not None:
            setattr(b, k, type(getattr(b, k))(options[k]))
    return ToolAugmentedScorer(
        rm,
        trace=options.get("trace", "generate"),
        budget=b,
        use_recorded=bool(options.get("use_recorded", True)),
    )


__all__ = [
    "CHECKERS",
    "RECORDED_TOOLS",
    "AnnotationCalculator",
    "Claim",
    "RMBudget",
    "RMTrace",
    "RecordedTool",
    "ToolAugmentedRewardModel",
    "ToolAugmentedScorer",
    "ToolExecutor",
    "ToolResult",
    "ToolVerifyScorer",
    "Verification",
    "check_calculations",
    "check_calendar",
    "check_support",
    "check_weather",
    "encode_trace",
    "load_reward_model",
    "parse_tool_call",
    "rm_messages",
    "scorer_from_spec",
    "step_segments",
    "tara_tools",
    "verify",
]
