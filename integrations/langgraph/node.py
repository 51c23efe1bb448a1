"""The LangGraph selection node: a ReAct graph's model node that picks by Q value.

:class:`QValueSelectionNode` samples N candidate messages from the agent's chat model
(:mod:`~agentq.integrations.langgraph.sampling`), scores the distinct ones with an agentq
``Scorer`` through the core selection step (:mod:`~agentq.integrations.langgraph.selection`)
and writes only the winner into the state, its ``Selection.to_dict()`` under
``agentq_selection``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from agentq.integrations.langgraph.messages import to_openai_messages
from agentq.integrations.langgraph.sampling import (
    Samples,
    Sampling,
    as_ai,
    asample,
    check_sampling,
    config_scope,
    sample_sync,
)
from agentq.integrations.langgraph.selection import (
    aselect_messages,
    check_policy,
    select_messages,
    with_selection,
)
from langchain_core.callbacks import CallbackManager
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    SystemMessage,
    convert_to_messages,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config

from agentq.protocols import Scorer
from agentq.search.selection import OnError
from agentq.types import Selection, join_warnings

try:  # the config keys LangGraph runs a node's tasks with (checked: langgraph 1.0-1.2)
    from langgraph._internal._constants import CONFIG_KEY_CALL as _CONFIG_KEY_CALL
    from langgraph._internal._constants import (
        CONFIG_KEY_CHECKPOINTER as _CONFIG_KEY_CHECKPOINTER,
    )
except ImportError:  # pragma: no cover - other langgraph layouts
    _CONFIG_KEY_CALL, _CONFIG_KEY_CHECKPOINTER = "__pregel_call", "__pregel_checkpointer"

MORE_STEPS_TEXT = "Sorry, need more steps to process this request."
"""The reply that replaces a tool-calling winner when ``remaining_steps`` has run out
(LangGraph's ``create_react_agent`` wording)."""

CANDIDATES_TASK = "agentq_candidates"
"""Name of the LangGraph task the node draws its candidates in (under a checkpointer), so that
a resume after an interrupt (in the scorer, say) reuses the same candidates."""


def get_state_value(state: Any, key: str, default: Any = None) -> Any:
    """``state[key]`` for a dict state, ``state.key`` for an object state."""
    if isinstance(state, dict):
        return state.get(key, default)
    return getattr(state, key, default)


def state_messages(state: Any, key: str) -> list[BaseMessage]:
    """The message list under ``key`` (or the state itself when it is a list), converted."""
    msgs = state if isinstance(state, list) else get_state_value(state, key)
    if msgs is None:
        raise ValueError(f"no {key!r} in the state given to the selection node")
    return list(convert_to_messages(msgs))


def _with_messages(state: Any, key: str, msgs: list[BaseMessage]) -> Any:
    if isinstance(state, dict):
        return {**state, key: msgs}
    if isinstance(state, list):
        return {key: msgs}
    if hasattr(state, "model_copy"):
        return state.model_copy(update={key: msgs})
    return state


def _prompt_output(out: Any) -> list[BaseMessage]:
    if hasattr(out, "to_messages"):  # a PromptValue (ChatPromptTemplate's output)
        return list(out.to_messages())
    if isinstance(out, dict) and "messages" in out:
        out = out["messages"]
    if isinstance(out, (str, BaseMessage)):
        out = [out]
    return list(convert_to_messages(out))


PromptLike = str | SystemMessage | Callable[[Any], Any] | Runnable[Any, Any] | None


def check_prompt(prompt: Any) -> Any:
    """Validate a prompt argument (``create_react_agent``'s kinds); a str becomes a
    ``SystemMessage``. Raises ``TypeError`` for anything else."""
    if prompt is None or isinstance(prompt, (SystemMessage, Runnable)) or callable(prompt):
        return prompt
    if isinstance(prompt, str):
        return SystemMessage(content=prompt)
    raise TypeError(
        "prompt must be a str, a SystemMessage, a callable or a Runnable taking the state, "
        f"not {type(prompt).__name__}"
    )


def _in_graph(config: RunnableConfig | None) -> bool:
    """True when running as a node of a LangGraph graph with a checkpointer (so a task's
    result survives an interrupt)."""
    conf = (config or {}).get("configurable") or {}
    return conf.get(_CONFIG_KEY_CALL) is not None and conf.get(_CONFIG_KEY_CHECKPOINTER) is not None


def _pack(s: Samples) -> dict[str, Any]:
    return {
        "samples": messages_to_dict(s.samples),
        "warning": s.warning,
        "sampling": s.sampling,
        "tokens": s.tokens,
    }


def _unpack(d: dict[str, Any]) -> Samples:
    msgs = [as_ai(m) for m in messages_from_dict(d["samples"])]
    tokens = d.get("tokens")
    return Samples(
        msgs,
        d.get("warning"),
        str(d.get("sampling", "")),
        tokens if isinstance(tokens, int) else None,
    )


class QValueSelectionNode(Runnable[Any, dict[str, Any]]):
    """A LangGraph node that picks the agent's next message by Q value (sync and async).

    Use it where a ReAct graph has its model node: ``graph.add_node("agent", node)``. It reads
    ``state["messages"]``, samples ``n`` candidates from ``model`` (the chat model already bound
    to its tools; the provider's ``n`` when supported, concurrent calls otherwise), scores the
    distinct candidates' canonical action texts with ``scorer`` in the context
    :func:`to_openai_messages` gives, and returns ``{"messages": [winner]}`` (plus
    ``{state_key: metadata}`` when ``state_key`` is set). ``n=1`` is a plain model call.

    Under a checkpointer the candidates are drawn in a LangGraph task
    (:data:`CANDIDATES_TASK`), so an ``interrupt()`` raised later in the node (by the scorer:
    a human approving candidates) resumes with the very candidates the human saw.

    Args:
        model: the agent's chat model (a ``Runnable`` taking messages and returning an AIMessage).
        scorer: any agentq Scorer (``score``/``ascore``).
        n: candidates per step.
        prompt: put before the model input (not stored in state): a str or ``SystemMessage``,
            or a callable / Runnable that takes the state and returns the model input
            (``create_react_agent``'s meaning).
        on_error: ``"raise"`` or ``"fallback"`` (first sample wins, warning in the metadata).
        sampling: ``"auto"``, ``"n"`` (provider's n) or ``"concurrent"``.
        hide_candidates: run samples with no callbacks at all (not even tracing).
        messages_key: the state key of the message list.
        state_key: also write the metadata to this state key (it must be in the schema).
        name: the node's name.
        agent_name: set as the winner's ``name`` (``create_react_agent``'s ``name``).
        llm_input_key: when the state has this key (a ``pre_model_hook``'s
            ``llm_input_messages``), the model sees it instead of ``messages_key``.
        return_direct: names of tools that end the run; with ``remaining_steps`` (in the
            state) below 2, a tool-calling winner is replaced by :data:`MORE_STEPS_TEXT`.
    """

    def __init__(
        self,
        model: Runnable[Any, Any],
        scorer: Scorer,
        n: int = 5,
        *,
        prompt: PromptLike = None,
        on_error: OnError = "raise",
        sampling: Sampling = "auto",
        hide_candidates: bool = False,
        messages_key: str = "messages",
        state_key: str | None = None,
        name: str | None = None,
        agent_name: str | None = None,
        llm_input_key: str | None = None,
        return_direct: Sequence[str] = (),
    ) -> None:
        check_policy(n, on_error)
        check_sampling(model, sampling)
        self.model = model
        self.scorer = scorer
        self.n = n
        self.prompt = check_prompt(prompt)
        self.on_error: OnError = on_error
        self.sampling: Sampling = sampling
        self.hide_candidates = hide_candidates
        self.messages_key = messages_key
        self.state_key = state_key
        self.name = name or "QValueSelectionNode"
        self.agent_name = agent_name
        self.llm_input_key = llm_input_key
        self.return_direct = frozenset(return_direct)
        self.n_ignored = False
        """Set once the model answered an ``n`` call with one sample: later steps go straight
        to concurrent calls."""

    # -- inputs ----------------------------------------------------------------------------
    def _history(self, state: Any) -> tuple[Any, list[BaseMessage]]:
        if self.llm_input_key is not None and not isinstance(state, list):
            hooked = get_state_value(state, self.llm_input_key)
            if hooked:
                msgs = list(convert_to_messages(hooked))
                return _with_messages(state, self.messages_key, msgs), msgs
        msgs = state_messages(state, self.messages_key)
        return state, msgs

    def _inputs(self, state: Any, config: RunnableConfig | None) -> list[BaseMessage]:
        state, msgs = self._history(state)
        p = self.prompt
        if p is None:
            return msgs
        if isinstance(p, SystemMessage):
            return [p, *msgs]
        view = _with_messages(state, self.messages_key, msgs)
        if isinstance(p, Runnable):
            return _prompt_output(p.invoke(view, config))
        return _prompt_output(p(view))

    async def _ainputs(self, state: Any, config: RunnableConfig | None) -> list[BaseMessage]:
        p = self.prompt
        if not isinstance(p, Runnable) and not asyncio.iscoroutinefunction(p):
            return self._inputs(state, config)
        state, msgs = self._history(state)
        view = _with_messages(state, self.messages_key, msgs)
        if isinstance(p, Runnable):
            return _prompt_output(await p.ainvoke(view, config))
        return _prompt_output(await p(view))

    # -- output ----------------------------------------------------------------------------
    def _finish_message(self, state: Any, message: AIMessage) -> AIMessage:
        if self.agent_name is not None:
            message = message.model_copy(update={"name": self.agent_name})
        remaining = None if isinstance(state, list) else get_state_value(state, "remaining_steps")
        if remaining is not None and message.tool_calls:
            direct = all(c["name"] in self.return_direct for c in message.tool_calls)
            if (remaining < 1 and direct) or remaining < 2:
                message = AIMessage(
                    id=message.id,
                    content=MORE_STEPS_TEXT,
                    name=message.name,
                    response_metadata=message.response_metadata,
                )
        return message

    def _update(self, state: Any, message: AIMessage) -> dict[str, Any]:
        return {self.messages_key: [self._finish_message(state, message)]}

    def _selected(self, state: Any, s: Samples, sel: Selection) -> dict[str, Any]:
        meta = sel.to_dict()
        winner = with_selection(s.samples[sel.sample_index or 0], meta)
        out = self._update(state, winner)
        if self.state_key is not None:
            out[self.state_key] = meta
        return out

    def _how(self) -> Sampling:
        return "concurrent" if self.n_ignored and self.sampling == "auto" else self.sampling

    def _note(self, s: Samples) -> Samples:
        if s.sampling == "n+concurrent" and self.sampling == "auto":
            self.n_ignored = True
        elif self.n_ignored and s.sampling == "concurrent" and self.sampling == "auto":
            note = "the model ignores n; sampled with concurrent calls"
            s = s._replace(warning=join_warnings(note, s.warning))
        return s

    # -- sampling, durable under a checkpointer ---------------------------------------------
    def _task_config(self, config: RunnableConfig) -> RunnableConfig:
        cfg: dict[str, Any] = dict(config)
        if self.hide_candidates:
            cfg["callbacks"] = CallbackManager(handlers=[])  # the task run is hidden too
        return cfg  # type: ignore[return-value]

    def _sample(self, msgs: list[BaseMessage], config: RunnableConfig) -> Samples:
        how = self._how()
        if not _in_graph(config):
            return sample_sync(
                self.model, msgs, self.n, config, sampling=how, hide_candidates=self.hide_candidates
            )

        def agentq_candidates(k: int) -> dict[str, Any]:
            return _pack(
                sample_sync(
                    self.model, msgs, k, ensure_config(), sampling=how,
                    hide_candidates=self.hide_candidates,
                )
            )  # fmt: skip

        from langgraph.pregel._call import call

        with config_scope(self._task_config(config)):
            fut = call(agentq_candidates, self.n)
        return _unpack(fut.result())

    async def _asample(self, msgs: list[BaseMessage], config: RunnableConfig) -> Samples:
        how = self._how()
        if not _in_graph(config):
            return await asample(
                self.model, msgs, self.n, config, sampling=how, hide_candidates=self.hide_candidates
            )

        async def agentq_candidates(k: int) -> dict[str, Any]:
            return _pack(
                await asample(
                    self.model, msgs, k, ensure_config(), sampling=how,
                    hide_candidates=self.hide_candidates,
                )
            )  # fmt: skip

        from langgraph.pregel._call import call

        with config_scope(self._task_config(config)):
            fut: Any = call(agentq_candidates, self.n)  # type: ignore[arg-type]
        return _unpack(await fut)

    # -- the Runnable ----------------------------------------------------------------------
    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Select the next message for state ``input`` (sync)."""
        config = ensure_config(config)
        msgs = self._inputs(input, config)
        if self.n == 1:
            return self._update(input, as_ai(self.model.invoke(msgs, config)))
        s = self._note(self._sample(msgs, config))
        ctx = to_openai_messages(msgs)
        sel = select_messages(s.samples, ctx, self.scorer, self.on_error, drawn=s)
        return self._selected(input, s, sel)

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Select the next message for state ``input`` (async)."""
        config = ensure_config(config)
        msgs = await self._ainputs(input, config)
        if self.n == 1:
            return self._update(input, as_ai(await self.model.ainvoke(msgs, config)))
        s = self._note(await self._asample(msgs, config))
        ctx = to_openai_messages(msgs)
        sel = await aselect_messages(s.samples, ctx, self.scorer, self.on_error, drawn=s)
        return self._selected(input, s, sel)


def create_selection_node(
    model: Runnable[Any, Any],
    scorer: Scorer,
    n: int = 5,
    **options: Any,
) -> QValueSelectionNode:
    """Build a :class:`QValueSelectionNode` (``options`` are its keyword arguments)."""
    return QValueSelectionNode(model, scorer, n, **options)


__all__ = [
    "CANDIDATES_TASK",
    "MORE_STEPS_TEXT",
    "PromptLike",
    "QValueSelectionNode",
    "check_prompt",
    "create_selection_node",
    "get_state_value",
    "state_messages",
]
