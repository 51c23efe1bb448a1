"""Scripted policies for the tool-use environment: the expert and a random baseline.

- :func:`expert_actions` writes the ReAct turns of a shipped task's reference solution: an
  action plan, one step per reference tool call, then ``finish`` with the answer. Tests run it
  on every shipped task to show each one is solvable with the tools as shipped.
- :class:`RandomToolPolicy` picks a random tool (or ``finish``) with random arguments drawn
  from plausible values (known cities, tickers, dates, words and numbers seen so far), the
  "random valid action" baseline of an open-ended action space.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from agentq.envs.tooluse.react import format_finish, format_turn
from agentq.envs.tooluse.tools import WEEKDAYS, StockTool, Tool, WeatherTool, WikiSearch

if TYPE_CHECKING:
    from agentq.envs.tooluse.env import ToolUseEnv


class TurnPolicy(Protocol):
    """A scripted policy: ``act()`` writes the next turn (``start(task_id)`` and
    ``observe(text)`` are optional)."""

    def act(self) -> str:
        """The next assistant turn."""
        ...


def expert_actions(task: Mapping[str, Any], plan: bool = True) -> list[str]:
    """The assistant turns that solve ``task`` from its reference ``calls`` and ``answer``."""
    calls = list(task.get("calls", []))
    turns = []
    if plan and calls:
        steps = [f"{i + 1}. {c.get('thought', '')} ({c['tool']})" for i, c in enumerate(calls)]
        steps.append(f"{len(calls) + 1}. Give the final answer (finish).")
        turns.append("Action Plan:\n" + "\n".join(steps))
    for c in calls:
        turns.append(format_turn(c.get("thought", "Next step."), c["tool"], c["args"]))
    turns.append(format_finish(task["answer"]))
    return turns


class ExpertPolicy:
    """Replays :func:`expert_actions` for the task of the current episode, one turn per call."""

    def __init__(self, env: ToolUseEnv) -> None:
        self.env = env
        self._turns: list[str] = []

    def start(self, task_id: str) -> None:
        """Prepare the turns of ``task_id`` (call after ``env.reset``)."""
        self._turns = expert_actions(self.env.task(task_id))

    def act(self) -> str:
        """The next turn (``finish`` again once the script is used up)."""
        return self._turns.pop(0) if self._turns else format_finish(None)


_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")
_WORD_RE = re.compile(r"[A-Z][a-z]{3,}(?: [A-Z][a-z]{3,})?")


class RandomToolPolicy:
    """Random tool calls with plausible random arguments, and random final answers.

    With probability ``p_finish`` it finishes with a random number or word seen in the question
    or an observation (or a random number); otherwise it calls a random tool with arguments
    drawn from the tools' own tables (cities, tickers, titles) and random dates in 2024.
    """

    def __init__(self, tools: Mapping[str, Tool], seed: int = 0, p_finish: float = 0.25) -> None:
        self.tools = dict(tools)
        self.rng = random.Random(seed)
        self.p_finish = p_finish
        self.cities: list[str] = []
        self.tickers: list[str] = []
        self.titles: list[str] = []
        for t in self.tools.values():
            if isinstance(t, WeatherTool):
                self.cities = sorted(t.cities)
            elif isinstance(t, StockTool):
                self.tickers = sorted(t.prices)
            elif isinstance(t, WikiSearch):
                self.titles = [d["title"] for d in t.docs]
        self.seen: list[str] = []

    def start(self, task_id: str) -> None:
        """A new episode: forget what the last one showed."""
        self.seen = []

    def observe(self, text: str) -> None:
        """Remember numbers and names from a question or observation (answer candidates)."""
        self.seen.extend(_NUM_RE.findall(text))
        self.seen.extend(_WORD_RE.findall(text))

    def _date(self) -> str:
        d = dt.date(2024, 1, 1) + dt.timedelta(days=self.rng.randrange(366))
        return d.isoformat()

    def _args(self, name: str) -> dict[str, Any]:
        r = self.rng
        if name == "calculator":
            a, b = r.randint(-500, 500), r.randint(1, 500)
            return {"expression": f"{a} {r.choice('+-*/')} {b}"}
        if name == "python_interpreter":
            return {"code": f"print({r.randint(0, 10**6)} {r.choice('+-*')} {r.randint(0, 1000)})"}
        if name == "calendar":
            op = r.choice(["weekday", "add_days", "days_between", "next_weekday"])
            args: dict[str, Any] = {"operation": op, "date": self._date()}
            if op == "add_days":
                args["days"] = r.randint(-1000, 1000)
            elif op == "days_between":
                args["end_date"] = self._date()
            elif op == "next_weekday":
                args["weekday"] = r.choice(WEEKDAYS)
            return args
        if name == "wiki_search":
            return {"query": r.choice(self.titles) if self.titles else "history"}
        if name == "weather":
            return {"city": r.choice(self.cities) if self.cities else "Paris", "date": self._date()}
        if name == "stock":
            return {
                "ticker": r.choice(self.tickers) if self.tickers else "ACME",
                "date": self._date(),
            }
        return {}

    def act(self) -> str:
        """One random assistant turn."""
        if self.rng.random() < self.p_finish:
            answer: Any = (
                self.rng.choice(self.seen)
                if self.seen and self.rng.random() < 0.8
                else self.rng.randint(0, 1000)
            )
            return format_finish(answer, "Guessing.")
        name = self.rng.choice(sorted(self.tools))
        return format_turn("Trying a tool.", name, self._args(name))


def run_episode(
    env: ToolUseEnv, task_id: str, policy: TurnPolicy
) -> tuple[float, list[dict[str, Any]]]:
    """Run ``policy`` (``act()``, optional ``start``/``observe``) on one task; (reward, infos)."""
    ctx = env.reset(task_id)
    start = getattr(policy, "start", None)
    if start is not None:
        start(task_id)
    observe = getattr(policy, "observe", None)
    if observe is not None:
        observe(ctx[-1]["content"])
    infos = []
    reward = 0.0
    for _ in range(env.max_steps):
        obs, r, done, info = env.step(policy.act())
        infos.append(info)
        reward += r
        if observe is not None:
            observe(obs)
        if done:
            break
    return reward, infos


__all__ = ["ExpertPolicy", "RandomToolPolicy", "TurnPolicy", "expert_actions", "run_episode"]


def _main() -> None:  # pragma: no cover - manual check
    from agentq.envs.tooluse.env import ToolUseEnv

    env = ToolUseEnv()
    ok = sum(run_episode(env, t, ExpertPolicy(env))[0] for t in env.tasks("all"))
    print(json.dumps({"expert_success": ok, "tasks": len(env.tasks("all"))}))


if __name__ == "__main__":  # pragma: no cover
    _main()
