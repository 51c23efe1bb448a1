"""The tools of the ToolComp-style environment: plain Python objects LangGraph can also bind.

Every tool is a :class:`Tool` with a ``name``, a ``description``, ``parameters`` (the JSON
schema of its arguments) and ``run(args) -> str``, which returns the observation text and
raises :class:`ToolError` when the arguments are bad. The one tool executor
(:func:`agentq.envs.tooluse.executor.run_tool_call`) turns unknown tools, malformed JSON and any
error into an observation (with ``ok=False``), so an agent's bad output never becomes an
exception.

Tools:

- ``calculator``: a safe arithmetic evaluator over Python's ``ast`` (never ``eval``).
- ``python_interpreter``: runs code in a sandboxed subprocess (see :mod:`.sandbox`).
- ``calendar``: weekday of a date, adding days, days between dates, the next given weekday.
- ``wiki_search``: BM25 (bm25s) over a local corpus (a shipped one by default).
- ``weather`` / ``stock``: offline stand-ins for live services, answering from shipped tables
  (synthetic, seeded data; see ``docs/tooluse.md``).
"""

from __future__ import annotations

import ast
import asyncio
import datetime as _dt
import json
import math
import operator
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Where the shipped corpus, tables and tasks live."""


class ToolError(Exception):
    """Bad arguments for a tool (or a tool-level failure); callers turn it into an observation."""


# --------------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------------
class Tool:
    """One tool. Subclasses set ``name``, ``description``, ``parameters`` and implement ``_call``.

    ``run`` accepts a dict of arguments or a string: a JSON object, or (for tools with a single
    required argument) the bare value of that argument. Arguments are checked against
    ``parameters`` (required keys, no unknown keys, types with light coercion such as ``"3"`` ->
    ``3`` for integers, enums).
    """

    name: str = ""
    description: str = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}, "required": []}

    # -- argument handling ---------------------------------------------------------------
    def parse_args(self, args: Mapping[str, Any] | str | None) -> dict[str, Any]:
        """Validate and coerce ``args`` against ``parameters``; raise :class:`ToolError` if bad."""
        props: dict[str, Any] = self.parameters.get("properties", {})
        required: list[str] = list(self.parameters.get("required", []))
        if args is None:
            args = {}
        if isinstance(args, str):
            text = args.strip()
            parsed: Any
            try:
                parsed = json.loads(text) if text else {}
            except json.JSONDecodeError:
                parsed = _NOT_JSON
            if isinstance(parsed, dict):
                args = parsed
            elif len(required) == 1:
                args = {required[0]: text}
            elif parsed is _NOT_JSON:
                raise ToolError(f"arguments for {self.name} are not valid JSON: {text[:200]!r}")
            else:
                raise ToolError(
                    f"arguments for {self.name} must be a JSON object, got {text[:200]!r}"
                )
        if not isinstance(args, Mapping):
            raise ToolError(
                f"arguments for {self.name} must be a JSON object, got {type(args).__name__}"
            )
        unknown = [k for k in args if k not in props]
        if unknown:
            raise ToolError(
                f"unknown argument(s) {', '.join(map(repr, unknown))} for {self.name}; "
                f"expected: {', '.join(props) or 'none'}"
            )
        missing = [k for k in required if args.get(k) is None]
        if missing:
            raise ToolError(
                f"missing required argument(s) {', '.join(map(repr, missing))} for {self.name}"
            )
        out: dict[str, Any] = {}
        for key, value in args.items():
            if value is None:
                continue
            out[key] = _coerce(self.name, key, value, props[key])
        return out

    def run(self, args: Mapping[str, Any] | str | None = None) -> str:
        """Run the tool on ``args`` and return the observation text.

        Raises :class:`ToolError` for bad arguments or a failure the tool reports.
        """
        return self._call(**self.parse_args(args))

    async def arun(self, args: Mapping[str, Any] | str | None = None) -> str:
        """Async twin of :meth:`run` (runs in a worker thread)."""
        return await asyncio.to_thread(self.run, args)

    def _call(self, **kwargs: Any) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        """The tool in the OpenAI function-calling format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"


class _NotJson:
    pass


_NOT_JSON = _NotJson()


def _coerce(tool: str, key: str, value: Any, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type")
    try:
        if kind == "integer":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                value = int(value)
            elif isinstance(value, str):
                value = int(value.strip())
            elif not isinstance(value, int):
                raise ValueError
        elif kind == "number":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str):
                value = float(value.strip())
            elif not isinstance(value, (int, float)):
                raise ValueError
        elif kind == "string":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            elif not isinstance(value, str):
                raise ValueError
    except ValueError:
        raise ToolError(
            f"argument {key!r} of {tool} must be of type {kind}, got {value!r}"
        ) from None
    if "enum" in spec:
        allowed = spec["enum"]
        if isinstance(value, str):
            match = [a for a in allowed if a.lower() == value.strip().lower()]
            if match:
                value = match[0]
        if value not in allowed:
            raise ToolError(f"argument {key!r} of {tool} must be one of {allowed}, got {value!r}")
    if "minimum" in spec and value < spec["minimum"]:
        raise ToolError(f"argument {key!r} of {tool} must be >= {spec['minimum']}, got {value!r}")
    if "maximum" in spec and value > spec["maximum"]:
        raise ToolError(f"argument {key!r} of {tool} must be <= {spec['maximum']}, got {value!r}")
    return value


def format_number(x: float | int) -> str:
    """Canonical text of a number: integers exactly, floats with 12 significant digits."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.12g}"


# --------------------------------------------------------------------------------------------
# calculator
# --------------------------------------------------------------------------------------------
_MAX_EXPR_CHARS = 2000
_MAX_INT_BITS = 4096
_MAX_NODES = 500

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _log(x: float, base: float | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


def _round(x: float, ndigits: int | None = None) -> float:
    if ndigits is not None and (not isinstance(ndigits, int) or isinstance(ndigits, bool)):
        raise ToolError("round() takes an integer number of digits")
    return round(x) if ndigits is None else round(x, ndigits)


_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "sum": lambda *xs: sum(xs),
    "log": _log,
    "ln": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "degrees": math.degrees,
    "radians": math.radians,
    "factorial": lambda n: _factorial(n),
    "gcd": math.gcd,
    "lcm": math.lcm,
    "hypot": math.hypot,
    "pow": lambda a, b: _pow(a, b),
}
_CONSTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _factorial(n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ToolError("factorial() takes a non-negative integer")
    if n > 500:
        raise ToolError("factorial() argument too large (at most 500)")
    return math.factorial(n)


def _check_size(x: Any) -> Any:
    if isinstance(x, int) and not isinstance(x, bool) and x.bit_length() > _MAX_INT_BITS:
        raise ToolError(f"result too large (more than {_MAX_INT_BITS} bits)")
    if isinstance(x, complex):
        raise ToolError("complex results are not supported")
    return x


def _pow(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        if b * math.log2(abs(a)) > _MAX_INT_BITS:
            raise ToolError(f"exponent too large: {a} ** {b} has more than {_MAX_INT_BITS} bits")
    if isinstance(b, (int, float)) and abs(b) > 10_000 and isinstance(a, int):
        raise ToolError("exponent too large (at most 10000)")
    return _check_size(a**b)


def safe_eval(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely (``ast`` walk, never ``eval``).

    Supports ``+ - * / // % **``, parentheses, unary minus/plus, number literals (``1_000``,
    ``1e3``), the constants ``pi``, ``e``, ``tau`` and the functions in ``_FUNCS`` (sqrt, round,
    abs, min, max, log, exp, ...). ``^`` is read as a power. Raises :class:`ToolError`.
    """
    if not isinstance(expression, str):
        raise ToolError("expression must be a string")
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise ToolError("empty expression")
    if len(text) > _MAX_EXPR_CHARS:
        raise ToolError(f"expression too long (at most {_MAX_EXPR_CHARS} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ToolError(f"cannot parse expression {expression!r}: {e.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise ToolError("expression too complex")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ToolError(f"unsupported literal {node.value!r}")
            return _check_size(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else +v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow):
                return _pow(left, right)
            if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > _MAX_INT_BITS + 1:
                    raise ToolError(f"result too large (more than {_MAX_INT_BITS} bits)")
            return _check_size(_BINOPS[type(node.op)](left, right))
        if isinstance(node, ast.Name):
            if node.id in _CONSTS:
                return _CONSTS[node.id]
            raise ToolError(f"unknown name {node.id!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
                fname = (
                    node.func.id if isinstance(node.func, ast.Name) else ast.dump(node.func)[:40]
                )
                raise ToolError(
                    f"unknown function {fname!r}; available: {', '.join(sorted(_FUNCS))}"
                )
            if node.keywords:
                raise ToolError("keyword arguments are not supported")
            call_args = [ev(a) for a in node.args]
            return _check_size(_FUNCS[node.func.id](*call_args))
        if isinstance(node, (ast.Tuple, ast.List)):
            raise ToolError("lists and tuples are only allowed as function arguments")
        raise ToolError(f"unsupported syntax: {type(node).__name__}")

    # min/max/sum over a list literal: flatten list arguments of calls
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and len(node.args) == 1
            and isinstance(node.args[0], (ast.List, ast.Tuple))
        ):
            node.args = list(node.args[0].elts)
    try:
        result = ev(tree)
    except ToolError:
        raise
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("numeric overflow") from None
    except (ValueError, TypeError) as e:
        raise ToolError(f"math error: {e}") from None
    if isinstance(result, float) and (math.isnan(result) or math.isinf(result)):
        raise ToolError("result is not a finite number")
    return result


class Calculator(Tool):
    """A safe calculator (see :func:`safe_eval`)."""

    name = "calculator"
    description = (
        "Evaluate an arithmetic expression. Supports + - * / // % ** (or ^), parentheses, "
        "and functions sqrt, round, abs, min, max, sum, log, ln, log10, log2, exp, floor, ceil, "
        "sin, cos, tan, factorial, gcd, lcm, pow; constants pi, e."
    )
    parameters = {
        "type": "object",
        "properties": {
            "expression": {"type": "string", "description": "e.g. (3.5 + 2) * 4 / sqrt(2)"}
        },
        "required": ["expression"],
    }

    def _call(self, expression: str) -> str:  # type: ignore[override]
        return format_number(safe_eval(expression))


# --------------------------------------------------------------------------------------------
# python_interpreter
# --------------------------------------------------------------------------------------------
class PythonInterpreter(Tool):
    """Runs Python code in the bubblewrap sandbox of :mod:`.sandbox` (namespaces, limits, a
    tmpfs scratch directory). ``isolation="process"`` opts in to the weaker in-process mode;
    without bubblewrap the constructor raises :class:`~.sandbox.SandboxUnavailableError`."""

    name = "python_interpreter"
    description = (
        "Run a Python 3 program and return what it prints (stdout and errors). The value of a "
        "final bare expression is printed too. Each call starts fresh: no state is kept between "
        "calls, there is no network access, files may only be written in the working directory, "
        "and time and memory are limited."
    )
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python source to run"}},
        "required": ["code"],
    }

    def __init__(
        self,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        max_output_chars: int = 4000,
        max_processes: int = 16,
        max_file_mb: int = 16,
        isolation: str = "bwrap",
        max_disk_mb: int = 64,
    ) -> None:
        from agentq.envs.tooluse.sandbox import check_isolation

        check_isolation(isolation)  # no bubblewrap: one clear error now, not at the first call
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.max_processes = max_processes
        self.max_file_mb = max_file_mb
        self.isolation = isolation
        self.max_disk_mb = max_disk_mb

    def _call(self, code: str) -> str:  # type: ignore[override]
        from agentq.envs.tooluse.sandbox import run_python

        result = run_python(
            code,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            max_output_chars=self.max_output_chars,
            max_processes=self.max_processes,
            max_file_mb=self.max_file_mb,
            isolation=self.isolation,
            max_disk_mb=self.max_disk_mb,
        )
        return result.observation


# --------------------------------------------------------------------------------------------
# calendar
# --------------------------------------------------------------------------------------------
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def parse_date(text: str, what: str = "date") -> _dt.date:
    """Parse ``YYYY-MM-DD`` (also ``YYYY/MM/DD`` and ``Month D, YYYY``); :class:`ToolError` if bad."""
    s = str(text).strip()
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%Y-%m-%dT%H:%M:%S"):
        try:
            return _dt.datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    raise ToolError(f"{what} {text!r} is not a date; use YYYY-MM-DD")


class CalendarTool(Tool):
    """Date arithmetic: weekday, add days, days between, next weekday."""

    name = "calendar"
    description = (
        "Date arithmetic on YYYY-MM-DD dates. operation='weekday' (the day of the week of date), "
        "'add_days' (date plus days, days may be negative), 'days_between' (days from date to "
        "end_date), 'next_weekday' (the first given weekday strictly after date)."
    )
    parameters = {
        "type": "object",
        "properties": {
            "operation": {
                "type": "string",
                "enum": ["weekday", "add_days", "days_between", "next_weekday"],
            },
            "date": {"type": "string", "description": "YYYY-MM-DD"},
            "days": {
                "type": "integer",
                "description": "for add_days",
                "minimum": -100000,
                "maximum": 100000,
            },
            "end_date": {"type": "string", "description": "for days_between, YYYY-MM-DD"},
            "weekday": {"type": "string", "enum": WEEKDAYS, "description": "for next_weekday"},
        },
        "required": ["operation", "date"],
    }

    def _call(  # type: ignore[override]
        self,
        operation: str,
        date: str,
        days: int | None = None,
        end_date: str | None = None,
        weekday: str | None = None,
    ) -> str:
        d = parse_date(date)
        if operation == "weekday":
            return f"{d.isoformat()} is a {WEEKDAYS[d.weekday()]}"
        if operation == "add_days":
            if days is None:
                raise ToolError("add_days needs 'days'")
            try:
                r = d + _dt.timedelta(days=days)
            except OverflowError:
                raise ToolError("date out of range") from None
            return f"{d.isoformat()} plus {days} days is {r.isoformat()} ({WEEKDAYS[r.weekday()]})"
        if operation == "days_between":
            if end_date is None:
                raise ToolError("days_between needs 'end_date'")
            e = parse_date(end_date, "end_date")
            return f"{(e - d).days} days from {d.isoformat()} to {e.isoformat()}"
        if weekday is None:
            raise ToolError("next_weekday needs 'weekday'")
        target = WEEKDAYS.index(weekday)
        delta = (target - d.weekday()) % 7 or 7
        r = d + _dt.timedelta(days=delta)
        return f"the first {weekday} after {d.isoformat()} is {r.isoformat()}"


# --------------------------------------------------------------------------------------------
# wiki_search
# --------------------------------------------------------------------------------------------
def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON Lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class WikiSearch(Tool):
    """BM25 search (bm25s) over a local corpus of ``{"title", "text"}`` documents."""

    name = "wiki_search"
    description = (
        "Search the encyclopedia and return the best matching articles (title and text). "
        "Use names and key words as the query."
    )
    parameters = {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "k": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10,
                "description": "articles to return (default 2)",
            },
        },
        "required": ["query"],
    }

    def __init__(
        self,
        corpus: str | Path | Iterable[Mapping[str, str]] | None = None,
        k: int = 2,
        max_chars: int = 1200,
    ) -> None:
        if corpus is None:
            corpus = DATA_DIR / "wiki.jsonl"
        if isinstance(corpus, (str, Path)):
            self.docs = [{"title": d["title"], "text": d["text"]} for d in load_jsonl(corpus)]
        else:
            self.docs = [{"title": d["title"], "text": d["text"]} for d in corpus]
        self.k = k
        self.max_chars = max_chars
        self._retriever: Any = None
        self._lock = threading.Lock()

    def _index(self) -> Any:
        with self._lock:
            if self._retriever is None:
                import bm25s

                texts = [f"{d['title']}. {d['title']}. {d['text']}" for d in self.docs]
                tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
                retriever = bm25s.BM25()
                retriever.index(tokens, show_progress=False)
                self._retriever = retriever
            return self._retriever

    def search(self, query: str, k: int | None = None) -> list[dict[str, str]]:
        """The top ``k`` documents for ``query`` (exact title matches first)."""
        import bm25s

        k = min(k or self.k, len(self.docs))
        if not self.docs or not query.strip():
            return []
        exact = [i for i, d in enumerate(self.docs) if d["title"].lower() == query.strip().lower()]
        retriever = self._index()
        q = bm25s.tokenize([query], stopwords="en", show_progress=False)
        order: list[int] = list(exact)
        if q.ids and len(q.ids[0]) > 0:
            ids, scores = retriever.retrieve(q, k=k, show_progress=False, n_threads=1)
            for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=False):
                if s > 0 and i not in order:
                    order.append(int(i))
        return [self.docs[i] for i in order[:k]]

    def _call(self, query: str, k: int | None = None) -> str:  # type: ignore[override]
        hits = self.search(query, k)
        if not hits:
            return f"No articles match {query!r}."
        parts = []
        for d in hits:
            text = d["text"]
            if len(text) > self.max_chars:
                text = text[: self.max_chars] + " ..."
            parts.append(f"[{d['title']}] {text}")
        return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# weather and stock: offline tables
# --------------------------------------------------------------------------------------------
def _load_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class WeatherTool(Tool):
    """Historical daily weather by city and date, from a shipped table.

    Table format (JSON): ``{"fields": ["high_c", "low_c", "precip_mm", "condition"],
    "cities": {city: {"YYYY-MM-DD": [high, low, precip, condition]}}}``. The shipped table is
    synthetic (seeded seasonal model), a stand-in for ToolComp's live weather service.
    """

    name = "weather"
    description = (
        "Historical weather for a city on a date (YYYY-MM-DD): daily high and low temperature in "
        "degrees Celsius, precipitation in mm and the conditions."
    )
    parameters = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "date": {"type": "string", "description": "YYYY-MM-DD"},
        },
        "required": ["city", "date"],
    }

    def __init__(self, table: str | Path | Mapping[str, Any] | None = None) -> None:
        if table is None:
            table = DATA_DIR / "weather.json"
        data = _load_json(table) if isinstance(table, (str, Path)) else table
        self.fields: list[str] = list(data["fields"])
        self.cities: dict[str, dict[str, list[Any]]] = dict(data["cities"])
        self._by_lower = {c.lower(): c for c in self.cities}

    def lookup(self, city: str, date: str) -> dict[str, Any]:
        """The record of ``city`` on ``date`` as a dict; :class:`ToolError` when absent."""
        name = self._by_lower.get(city.strip().lower())
        if name is None:
            raise ToolError(
                f"no weather data for city {city!r}; known cities: {', '.join(sorted(self.cities))}"
            )
        d = parse_date(date).isoformat()
        row = self.cities[name].get(d)
        if row is None:
            days = sorted(self.cities[name])
            raise ToolError(
                f"no weather data for {name} on {d}; data covers {days[0]} to {days[-1]}"
            )
        return {"city": name, "date": d, **dict(zip(self.fields, row, strict=False))}

    def _call(self, city: str, date: str) -> str:  # type: ignore[override]
        r = self.lookup(city, date)
        return (
            f"Weather in {r['city']} on {r['date']}: high {format_number(r['high_c'])} °C, "
            f"low {format_number(r['low_c'])} °C, precipitation {format_number(r['precip_mm'])} mm, "
            f"{r['condition']}."
        )


class StockTool(Tool):
    """Daily stock prices by ticker and date, from a shipped table.

    Table format (JSON): ``{"fields": ["open", "high", "low", "close", "volume"], "companies":
    {ticker: name}, "prices": {ticker: {"YYYY-MM-DD": [open, high, low, close, volume]}}}``.
    The shipped table is synthetic (invented companies, seeded random walks).
    """

    name = "stock"
    description = (
        "Daily stock price of a ticker symbol on a trading date (YYYY-MM-DD): open, high, low, "
        "close (USD) and volume. Markets are closed on weekends."
    )
    parameters = {
        "type": "object",
        "properties": {
            "ticker": {"type": "string"},
            "date": {"type": "string", "description": "YYYY-MM-DD"},
        },
        "required": ["ticker", "date"],
    }

    def __init__(self, table: str | Path | Mapping[str, Any] | None = None) -> None:
        if table is None:
            table = DATA_DIR / "stocks.json"
        data = _load_json(table) if isinstance(table, (str, Path)) else table
        self.fields: list[str] = list(data["fields"])
        self.companies: dict[str, str] = dict(data.get("companies", {}))
        self.prices: dict[str, dict[str, list[Any]]] = dict(data["prices"])

    def lookup(self, ticker: str, date: str) -> dict[str, Any]:
        """The record of ``ticker`` on ``date`` as a dict; :class:`ToolError` when absent."""
        t = ticker.strip().upper().lstrip("$")
        if t not in self.prices:
            by_name = {n.lower(): k for k, n in self.companies.items()}
            t = by_name.get(ticker.strip().lower(), t)
        if t not in self.prices:
            raise ToolError(f"unknown ticker {ticker!r}; known: {', '.join(sorted(self.prices))}")
        d = parse_date(date)
        row = self.prices[t].get(d.isoformat())
        if row is None:
            if d.weekday() >= 5:
                raise ToolError(
                    f"no trading on {d.isoformat()} ({WEEKDAYS[d.weekday()]}): markets are closed"
                )
            days = sorted(self.prices[t])
            raise ToolError(
                f"no price for {t} on {d.isoformat()}; data covers trading days {days[0]} to {days[-1]}"
            )
        return {"ticker": t, "date": d.isoformat(), **dict(zip(self.fields, row, strict=False))}

    def _call(self, ticker: str, date: str) -> str:  # type: ignore[override]
        r = self.lookup(ticker, date)
        name = self.companies.get(r["ticker"], r["ticker"])
        return (
            f"{r['ticker']} ({name}) on {r['date']}: open {r['open']:.2f}, high {r['high']:.2f}, "
            f"low {r['low']:.2f}, close {r['close']:.2f} USD, volume {int(r['volume'])}."
        )


# --------------------------------------------------------------------------------------------
# registry helpers
# --------------------------------------------------------------------------------------------
TOOL_NAMES = ("calculator", "python_interpreter", "calendar", "wiki_search", "weather", "stock")


def default_tools(
    data_dir: str | Path | None = None,
    include: Iterable[str] | None = None,
    python_timeout_s: float = 10.0,
    python_memory_mb: int = 1024,
    max_output_chars: int = 4000,
    python_isolation: str = "bwrap",
) -> dict[str, Tool]:
    """The standard tool set, by name, over the shipped data (or the files in ``data_dir``).

    ``data_dir`` may hold ``wiki.jsonl``, ``weather.json`` and ``stocks.json``; ``include``
    restricts the set to some of :data:`TOOL_NAMES`; ``python_isolation`` is the sandbox of
    ``python_interpreter`` (``bwrap``, or the weaker ``process`` by name).
    """
    base = Path(data_dir) if data_dir is not None else DATA_DIR
    wanted = list(include) if include is not None else list(TOOL_NAMES)
    unknown = [n for n in wanted if n not in TOOL_NAMES]
    if unknown:
        raise ValueError(f"unknown tool(s) {unknown}; known: {list(TOOL_NAMES)}")
    makers: dict[str, Callable[[], Tool]] = {
        "calculator": Calculator,
        "python_interpreter": lambda: PythonInterpreter(
            timeout_s=python_timeout_s,
            memory_mb=python_memory_mb,
            max_output_chars=max_output_chars,
            isolation=python_isolation,
        ),
        "calendar": CalendarTool,
        "wiki_search": lambda: WikiSearch(base / "wiki.jsonl"),
        "weather": lambda: WeatherTool(base / "weather.json"),
        "stock": lambda: StockTool(base / "stocks.json"),
    }
    return {n: makers[n]() for n in wanted}


def as_langchain_tool(tool: Tool) -> Any:
    """The tool as a langchain-core ``StructuredTool`` (sync and async), for LangGraph to bind.

    Bad arguments come back to the model as the error text (``handle_tool_error=True``).
    """
    from langchain_core.tools import StructuredTool, ToolException

    def _func(**kwargs: Any) -> str:
        try:
            return tool.run(kwargs)
        except ToolError as e:
            raise ToolException(f"Error: {e}") from e

    async def _afunc(**kwargs: Any) -> str:
        try:
            return await tool.arun(kwargs)
        except ToolError as e:
            raise ToolException(f"Error: {e}") from e

    return StructuredTool.from_function(
        func=_func,
        coroutine=_afunc,
        name=tool.name,
        description=tool.description,
        args_schema=tool.parameters,
        infer_schema=False,
        handle_tool_error=True,
    )


__all__ = [
    "DATA_DIR",
    "TOOL_NAMES",
    "WEEKDAYS",
    "CalendarTool",
    "Calculator",
    "PythonInterpreter",
    "StockTool",
    "Tool",
    "ToolError",
    "WeatherTool",
    "WikiSearch",
    "as_langchain_tool",
    "default_tools",
    "format_number",
    "parse_date",
    "safe_eval",
]
