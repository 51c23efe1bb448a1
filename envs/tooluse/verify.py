"""The non-learned tool-verification scorer (spec ``tool-verify``, the Themis baseline).

:class:`ToolVerifyScorer` extracts the claims of a candidate that tools can check (calculator
annotations ``<<expr=value>>`` and the final ``#### answer``, weekday / day-difference /
target-day claims, weather facts, facts a search result can support), re-executes the tools
(TARA's tool set, :mod:`agentq.envs.tooluse.tara`, through the one executor) and scores the
candidate by the share of its checkable claims that hold (``no_claim_score`` when it makes
none). It is registered as the ``tool-verify`` entry point of ``agentq.scorers``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentq.envs.tooluse.executor import ToolExecutor
from agentq.envs.tooluse.recorded import norm_key
from agentq.envs.tooluse.tara import ANNOT_RE, NUM_RE, calculator_expression, close, to_number
from agentq.envs.tooluse.tools import WEEKDAYS, Tool, format_number

from agentq.models.reward.prompt import question_of
from agentq.protocols import BaseScorer
from agentq.types import Context


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
    for m in NUM_RE.finditer(text):
        if any(s <= m.start() < e for s, e in spans):
            continue
        try:
            out.append(to_number(m.group(0)))
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
    for m in ANNOT_RE.finditer(answer):
        expr, stated = m.group(1), m.group(2)
        expr_text = calculator_expression(expr)
        r = ex.execute("calculator", json.dumps({"expression": expr_text}))
        if not r.ok:
            continue
        try:
            value = to_number(r.observation)
        except ValueError:
            continue
        last = value
        try:
            ok = close(value, to_number(stated))
        except ValueError:
            ok = False
        claims.append(Claim("calculation", m.group(0), ok, "calculator", r.observation))
    fm = _FINAL_RE.search(answer)
    if fm and last is not None:
        try:
            ok = close(to_number(fm.group(1)), last)
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
        ok = norm_key(truth) in norm_key(answer)
    else:
        true_nums = [to_number(x) for x in NUM_RE.findall(truth)]
        ans = answer.replace(city, " ")
        if m.group("n"):
            ans = re.sub(rf"\b{m.group('n')}\s+days?\b", " ", ans)
        stated = _numbers_outside_dates(ans)
        if not stated:
            return []
        ok = any(close(s, t) for s in stated for t in true_nums)
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


class ToolVerifyScorer(BaseScorer):
    """The non-learned tool-verification scorer (spec ``tool-verify``).

    Scores each candidate by the share of its checkable claims that hold when the tools
    re-execute them (see :func:`verify`); a candidate with no checkable claim scores
    ``no_claim_score``. The question is the context's user message (a longer conversation is
    used whole). Tool results are cached for the scorer's lifetime. ``prepare_pairs(pairs)``
    (called by
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
            question_of(context),
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


__all__ = [
    "CHECKERS",
    "WEATHER_FIELDS",
    "Claim",
    "ToolVerifyScorer",
    "Verification",
    "check_calculations",
    "check_calendar",
    "check_support",
    "check_weather",
    "parse_weather_observation",
    "verify",
]
