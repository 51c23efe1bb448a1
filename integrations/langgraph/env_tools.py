"""An agentq environment as LangGraph tools (:class:`EnvTools`), and a Scorer of env text
actions made to score those tools' calls (:class:`EnvActionScorer`)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool

from agentq.protocols import FREE_TEXT, Env, Scorer
from agentq.render import TOOL_CALL_PREFIX, observation_message
from agentq.search.selection import ascore, scorer_name
from agentq.types import Context, StepResult

_VERB_RE = re.compile(r"^([A-Za-z_][\w-]*)\[(.*)\]$", re.S)


def _verbs(actions: Sequence[str]) -> dict[str, list[str]]:
    """verb -> example arguments, from env actions like ``open[A]`` (``[]`` for bare actions)."""
    out: dict[str, list[str]] = {}
    for a in actions:
        m = _VERB_RE.match(a.strip())
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
        elif re.fullmatch(r"[A-Za-z_][\w-]*", a.strip()):
            out.setdefault(a.strip(), [])
        else:
            return {}  # not a verb-shaped action set: use the generic tool
    return out


class EnvActionScorer:
    """A Scorer of env text actions made to score an :class:`EnvTools` agent's tool calls.

    Actions (canonical tool-call texts) become the env actions the calls execute, and the
    context is put in agentq's env form (:meth:`EnvTools.env_context`), so a Q-model trained by
    ``agentq collect``/``train`` on the environment scores the LangGraph agent's candidates.
    """

    def __init__(self, scorer: Scorer, env_tools: EnvTools) -> None:
        self.scorer = scorer
        self.env_tools = env_tools
        self.spec = scorer_name(scorer) or ""

    def _args(self, context: Context, actions: Sequence[str]) -> tuple[Context, list[str]]:
        return self.env_tools.env_context(context), [
            self.env_tools.env_action_text(a) for a in actions
        ]

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Score with the wrapped scorer on env action texts."""
        return list(self.scorer.score(*self._args(context, actions)))

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Async twin of :meth:`score`."""
        return list(await ascore(self.scorer, *self._args(context, actions)))


@dataclass
class _Record:
    tool_call_id: str | None
    message_id: str | None
    action: str
    result: StepResult


class EnvTools:
    """An agentq environment exposed as LangGraph tools, recording every step for rollouts.

    ``mode="act"`` (default): one tool (``name``, default ``act``) takes ``action``, the
    environment's action text (``open[A]``, ``search[red shoes]``), executes it with
    ``env.step`` and returns the observation. Its rendered call
    (``Tool call: {"arguments":{"action":"open[A]"},"name":"act"}``) contains the action text, so
    Scorers that read env actions from the text work on it directly.

    ``mode="verbs"``: one tool per action verb of the environment's first state
    (``open[A]`` -> a tool ``open(arg="A")``; an action without brackets -> a tool without
    arguments), easier for small models. Environments without ``valid_actions()`` fall back to
    ``"act"``. Wrap a scorer trained on env text actions with :meth:`env_scorer`.

    Build the agent with ``env_tools.tools`` and pass this object to :func:`rollout`. Steps are
    serialised with a lock (a ``ToolNode`` may run parallel calls in threads).
    """

    def __init__(
        self,
        env: Env,
        *,
        name: str = "act",
        description: str | None = None,
        mode: Literal["act", "verbs"] = "act",
    ) -> None:
        if mode not in ("act", "verbs"):
            raise ValueError("mode must be 'act' or 'verbs'")
        self.env = env
        self.name = name
        self.records: list[_Record] = []
        self.done = False
        self.reward = 0.0
        self.task_id: str | None = None
        self.context: Context = []
        self._lock = threading.Lock()
        examples = self._examples()
        self.verbs: dict[str, list[str]] = _verbs(examples) if mode == "verbs" else {}
        self.mode = "verbs" if self.verbs else "act"
        if self.mode == "act":
            self._tools: list[BaseTool] = [
                StructuredTool.from_function(
                    func=self._act, name=name, description=description or self._describe(examples)
                )
            ]
        else:
            self._tools = [self._verb_tool(v, args) for v, args in self.verbs.items()]

    def _describe(self, examples: list[str]) -> str:
        env_name = getattr(self.env, "name", "the")
        return (
            f"Take one action in the {env_name} environment and get the observation back. "
            "`action` is the action text exactly as the environment expects it"
            + (f", for example: {', '.join(examples)}." if examples else ".")
        )

    def _verb_tool(self, verb: str, args: list[str]) -> BaseTool:
        env_name = getattr(self.env, "name", "the")
        if args:

            def with_arg(arg: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
                return self.step(f"{verb}[{arg}]", tool_call_id=tool_call_id)

            shown = ", ".join(a for a in args if a != FREE_TEXT) or "free text"
            desc = f"Do {verb}[arg] in the {env_name} environment; `arg` is, for example: {shown}."
            return StructuredTool.from_function(func=with_arg, name=verb, description=desc)

        def no_arg(tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
            return self.step(verb, tool_call_id=tool_call_id)

        return StructuredTool.from_function(
            func=no_arg, name=verb, description=f"Do {verb} in the {env_name} environment."
        )

    def _examples(self, k: int = 8) -> list[str]:
        """A few valid actions of the environment's first state (for the tool descriptions)."""
        try:
            for split in ("test", "train"):
                ids = self.env.tasks(split)
                if ids:
                    self.env.reset(ids[0])
                    return list(self.env.valid_actions() or [])[:k]
        except Exception:  # noqa: BLE001 - a description without examples is fine
            return []
        return []

    @property
    def tools(self) -> list[BaseTool]:
        """The tools to give the agent."""
        return list(self._tools)

    @property
    def tool_names(self) -> list[str]:
        """Names of :attr:`tools`."""
        return [t.name for t in self._tools]

    def _act(self, action: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Execute ``action`` in the environment and return the observation."""
        return self.step(action, tool_call_id=tool_call_id)

    def env_action(self, name: str, args: dict[str, Any] | None) -> str | None:
        """The environment action text a call of one of these tools executes (None if foreign)."""
        args = args or {}
        if self.mode == "act":
            return str(args.get("action", "")) if name == self.name else None
        if name not in self.verbs:
            return None
        return f"{name}[{args.get('arg', '')}]" if self.verbs[name] else name

    def env_action_text(self, action: str) -> str:
        """A canonical action text with this env's tool-call lines replaced by env actions."""
        out = []
        for line in action.split("\n"):
            if line.startswith(TOOL_CALL_PREFIX):
                try:
                    call = json.loads(line[len(TOOL_CALL_PREFIX) :])
                    env_action = self.env_action(str(call.get("name")), call.get("arguments"))
                except (json.JSONDecodeError, AttributeError):
                    env_action = None
                out.append(env_action if env_action is not None else line)
            else:
                out.append(line)
        return "\n".join(out)

    def env_context(self, context: Context) -> Context:
        """A scorer context in agentq's env form: env action texts, ``Observation: ...`` turns."""
        out: Context = []
        for m in context:
            if m.get("role") == "assistant" and m.get("tool_calls"):
                out.append(
                    {
                        "role": "assistant",
                        "content": self.env_action_text(str(m.get("content", ""))),
                    }
                )
            elif m.get("role") == "tool":
                out.append(observation_message(str(m.get("content", ""))))
            else:
                out.append(m)
        return out

    def env_scorer(self, scorer: Scorer) -> EnvActionScorer:
        """Wrap a Scorer of env text actions so it scores this env's tool calls."""
        return EnvActionScorer(scorer, self)

    def reset(self, task_id: str) -> list[BaseMessage]:
        """Start ``task_id``; return its context as LangChain messages."""
        with self._lock:
            context = self.env.reset(task_id)
            self.records = []
            self.done = False
            self.reward = 0.0
            self.task_id = task_id
        self.context = list(context)
        return list(convert_to_messages([dict(m) for m in context]))

    def step(
        self, action: str, *, tool_call_id: str | None = None, message_id: str | None = None
    ) -> str:
        """Execute ``action`` (text) and record the step; returns the observation text."""
        with self._lock:
            result = StepResult(*self.env.step(action))
            self.records.append(_Record(tool_call_id, message_id, action, result))
            self.reward += float(result.reward)
            self.done = self.done or bool(result.done)
        return result.observation


__all__ = ["EnvActionScorer", "EnvTools"]
