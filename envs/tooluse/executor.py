"""Running tool calls: agentq's one tool executor.

:func:`run_tool_call` runs one call by name and turns every mistake (an unknown tool, arguments
that are not a JSON object, a :class:`~agentq.envs.tooluse.tools.ToolError`, any other exception
of the tool) into an ``Error: ...`` observation with ``ok=False``, so an agent's bad output
never becomes an exception. The environment calls it for each action.

:class:`ToolExecutor` runs the same function for the tool-augmented reward model and the
``tool-verify`` scorer, adding a time limit per call, a cache of the run's results, a cap on
the observation's length and the recorded observations of services that cannot run offline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from agentq.envs.tooluse.react import loads_safely
from agentq.envs.tooluse.recorded import RecordedTool
from agentq.envs.tooluse.tools import Tool, ToolError

from agentq.models.reward.tools import ToolResult

TEXT_ARGS = ("json", "raw")
"""How :func:`run_tool_call` reads arguments given as text: ``json`` (a JSON object, else an
error) or ``raw`` (a JSON object when the text is one, else the text as it is, for tools that
take a plain-text input such as TARA's)."""


def resolve_tool(tools: Mapping[str, Tool], name: str) -> Tool | None:
    """The tool called ``name``: exact, then in any case, then with spaces as underscores
    (quotes and backticks around the name are ignored). None when there is none."""
    name = (name or "").strip().strip("`'\"")
    if name in tools:
        return tools[name]
    lowered = {k.lower(): v for k, v in tools.items()}
    return lowered.get(name.lower()) or lowered.get(name.lower().replace(" ", "_"))


def unknown_tool(tools: Mapping[str, Tool], name: str) -> str:
    """The observation for a call of a tool that does not exist."""
    return (
        f"Error: unknown tool {str(name or '').strip()[:80]!r}. "
        f"Available tools: {', '.join(tools)}."
    )


def run_tool_call(
    tools: Mapping[str, Tool],
    name: str,
    args: Mapping[str, Any] | str | None,
    *,
    text_args: str = "json",
) -> tuple[str, bool]:
    """Run one tool call and return ``(observation, ok)``; never raises for agent mistakes.

    An unknown tool, arguments that are not a JSON object (when given as text, with
    ``text_args="json"``), a :class:`ToolError` or any other exception from the tool become an
    observation starting with ``"Error:"`` and ``ok=False``. See :data:`TEXT_ARGS`.
    """
    tool = resolve_tool(tools, name)
    if tool is None:
        return unknown_tool(tools, name), False
    if isinstance(args, str):
        text = args.strip()
        if text_args == "raw":
            parsed = loads_safely(text)[0] if text.startswith("{") else None
            if isinstance(parsed, dict):
                args = parsed
        elif text:
            args, err = loads_safely(text)
            if err is not None:
                return f"Error: Action Input is not valid JSON ({err}): {text[:200]}", False
            if not isinstance(args, dict):
                return f"Error: Action Input must be a JSON object, got {text[:200]}", False
        else:
            args = {}
    try:
        return tool.run(args), True
    except ToolError as e:
        return f"Error: {e}", False
    except Exception as e:  # a tool that raises: the agent sees it, the run goes on
        return f"Error: tool {tool.name} failed: {type(e).__name__}: {e}", False


async def arun_tool_call(
    tools: Mapping[str, Tool],
    name: str,
    args: Mapping[str, Any] | str | None,
    *,
    text_args: str = "json",
) -> tuple[str, bool]:
    """Async twin of :func:`run_tool_call` (runs in a worker thread)."""
    return await asyncio.to_thread(run_tool_call, tools, name, args, text_args=text_args)


class ToolExecutor:
    """Runs tool calls by name (:func:`run_tool_call`, plain-text inputs allowed) with a time
    limit, and caches results for the run.

    ``execute(name, action_input)`` never raises for a bad call: an unknown tool, bad
    arguments, a tool error or a timeout come back as an ``Error: ...`` observation with
    ``ok=False``. Identical calls (same tool, same normalised input) are answered from the
    cache. ``tools`` defaults to TARA's tool set (:func:`agentq.envs.tooluse.tara.tara_tools`).
    """

    def __init__(
        self,
        tools: Mapping[str, Tool] | None = None,
        *,
        timeout_s: float = 10.0,
        cache: bool = True,
        max_observation_chars: int = 2000,
    ) -> None:
        if tools is None:
            from agentq.envs.tooluse.tara import tara_tools

            tools = tara_tools()
        self.tools: dict[str, Tool] = dict(tools)
        self.timeout_s = timeout_s
        self.use_cache = cache
        self.max_observation_chars = max_observation_chars
        self.cache: dict[tuple[str, str], ToolResult] = {}
        self.calls = 0
        self.cache_hits = 0
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def resolve(self, name: str) -> Tool | None:
        """The tool called ``name`` (:func:`resolve_tool`)."""
        return resolve_tool(self.tools, name)

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
            return ToolResult(unknown_tool(self.tools, name), False, "error")
        t0 = time.perf_counter()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="agentq-tool")
        fut = self._pool.submit(run_tool_call, self.tools, name, action_input, text_args="raw")
        try:
            obs, ok = fut.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            obs, ok = f"Error: {tool.name} timed out after {self.timeout_s:g} s", False
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
        """Load the observations TARA recorded for the live services (the executor's
        :class:`RecordedTool` objects, TARA's :data:`~agentq.envs.tooluse.tara.RECORDED_TOOLS`).

        Only steps of recorded tools are used; calculator and calendar steps are always
        re-executed. Returns the number of records added.
        """
        n = 0
        for p in pairs:
            for ans in (getattr(p, "pos", None), getattr(p, "neg", None)):
                for step in getattr(ans, "steps", []) or []:
                    if step.observation:
                        n += self.add_records(step.action, {step.action_input: step.observation})
        return n

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


__all__ = [
    "TEXT_ARGS",
    "ToolExecutor",
    "arun_tool_call",
    "resolve_tool",
    "run_tool_call",
    "unknown_tool",
]
