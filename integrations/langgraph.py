"""LangGraph integration: Q-value-guided action selection as one node, a prebuilt agent, rollouts.

At each agent step the selection node samples N candidate assistant messages from the agent's own
chat model (bound to its tools), renders each to the canonical action text
(:func:`agentq.render.render_action`, the text a Q-model is trained and scored on), scores the
distinct ones with any agentq ``Scorer`` and writes only the winning ``AIMessage`` into the state.

What was considered is kept under one key, :data:`SELECTION_KEY` (``"agentq_selection"``): in the
winner's ``response_metadata`` always, and as a state key when the state schema has one (the state
of :func:`create_q_agent` does). Its value is a plain-JSON dict::

    {"n": 5, "candidates": [{"text": ..., "count": 2, "logprob": None}, ...],
     "scores": [0.3, 0.9, ...] | None, "index": 1, "sample_index": 3,
     "scorer": "qmodel:out/", "warning": None}

``candidates`` are the distinct samples (duplicates merged, each scored once), ``scores`` is
aligned with them, ``index`` is the winner among them and ``sample_index`` the winning sample.

Public names: :func:`to_openai_messages` (the one LangChain -> OpenAI message converter),
:class:`QValueSelectionNode` / :func:`create_selection_node`, :func:`create_q_agent`,
:class:`EnvTools` (an agentq environment as LangGraph tools), :func:`rollout` / :func:`arollout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from langchain_core.callbacks import CallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, ensure_config
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.managed import RemainingSteps
from typing_extensions import NotRequired, TypedDict

from agentq.errors import ProposerError, ScorerError
from agentq.policies import merge_candidates
from agentq.protocols import FREE_TEXT
from agentq.render import TOOL_CALL_PREFIX, observation_message, render_action, render_tool_call
from agentq.search.selection import pick
from agentq.types import Candidate, Context, Message, Step, StepResult, Trajectory

try:  # the config keys LangGraph runs a node's tasks with (checked: langgraph 1.0-1.2)
    from langgraph._internal._constants import CONFIG_KEY_CALL as _CONFIG_KEY_CALL
    from langgraph._internal._constants import (
        CONFIG_KEY_CHECKPOINTER as _CONFIG_KEY_CHECKPOINTER,
    )
except ImportError:  # pragma: no cover - other langgraph layouts
    _CONFIG_KEY_CALL, _CONFIG_KEY_CHECKPOINTER = "__pregel_call", "__pregel_checkpointer"

logger = logging.getLogger(__name__)

SELECTION_KEY = "agentq_selection"
"""The one key under which selection metadata is stored (response_metadata and state)."""

CANDIDATE_TAG = "agentq:candidate"
"""Tag on every candidate-sampling model run (so callback handlers can filter them)."""

NOSTREAM_TAGS = ("nostream", "langsmith:nostream")
"""Tags that keep a model run out of LangGraph's ``stream_mode="messages"`` (1.x and 0.x)."""

OnError = Literal["raise", "fallback"]
Sampling = Literal["auto", "n", "concurrent"]


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------
def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    return "" if content is None else str(content)


def _openai_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    import json

    return {
        "id": call.get("id") or "",
        "type": "function",
        "function": {
            "name": call.get("name", ""),
            "arguments": json.dumps(call.get("args") or {}, sort_keys=True, ensure_ascii=False),
        },
    }


def to_openai_messages(messages: Sequence[Any]) -> Context:
    """Convert LangChain messages (or anything ``convert_to_messages`` takes) to OpenAI dicts.

    This is the context handed to scorers. System, human, AI, tool and chat messages keep their
    roles (``system``, ``user``, ``assistant``, ``tool``, the chat role); content blocks are
    flattened to their text. An assistant turn with tool calls carries its canonical action text
    (:func:`agentq.render.render_action`, the text Q-models are trained on) as ``content`` and the
    calls in OpenAI form under ``tool_calls``; tool messages keep ``tool_call_id`` and ``name``.
    """
    out: Context = []
    for m in convert_to_messages(list(messages)):
        text = _text(m.content)
        msg: Message
        if isinstance(m, SystemMessage):
            msg = {"role": "system", "content": text}
        elif isinstance(m, HumanMessage):
            msg = {"role": "user", "content": text}
        elif isinstance(m, AIMessage):
            calls = [dict(c) for c in m.tool_calls]
            msg = {"role": "assistant", "content": render_action(text, calls) if calls else text}
            if calls:
                msg["tool_calls"] = [_openai_tool_call(c) for c in calls]
        elif isinstance(m, ToolMessage):
            msg = {"role": "tool", "content": text, "tool_call_id": m.tool_call_id}
            if m.name:
                msg["name"] = m.name
        else:
            role = getattr(m, "role", None) or {"function": "tool"}.get(m.type, m.type)
            msg = {"role": str(role), "content": text}
        out.append(msg)
    return out


def candidate_text(message: AIMessage) -> str:
    """The canonical action text of an assistant message (its text, then one line per call)."""
    return render_action(_text(message.content), [dict(c) for c in message.tool_calls])


def selection_of(message: BaseMessage) -> dict[str, Any] | None:
    """The selection metadata a selected ``AIMessage`` carries (None for other messages)."""
    meta = getattr(message, "response_metadata", None) or {}
    value = meta.get(SELECTION_KEY)
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------------------------
# Selection (shared by the node and the middleware)
# --------------------------------------------------------------------------------------------
def _check_scores(scores: Any, k: int) -> list[float]:
    out = [float(s) for s in scores]
    if len(out) != k:
        raise ScorerError(f"scorer returned {len(out)} scores for {k} candidates")
    bad = [s for s in out if not math.isfinite(s)]
    if bad:
        # NaN and +-inf alike: a score must be a finite number (metadata is plain JSON)
        raise ScorerError(f"scorer returned a non-finite score ({bad[0]})")
    return out


def _candidate(msg: AIMessage) -> Candidate:
    meta = msg.response_metadata or {}
    lp = meta.get("logprob")
    usage: dict[str, Any] = dict(msg.usage_metadata or {})
    return Candidate(
        candidate_text(msg),
        logprob=float(lp) if isinstance(lp, (int, float)) else None,
        tokens=usage.get("output_tokens"),
    )


@dataclass
class _Prepared:
    cands: list[Candidate]
    texts: list[str]


def _prepare(samples: Sequence[AIMessage]) -> _Prepared:
    texts = [candidate_text(m) for m in samples]
    return _Prepared(merge_candidates([_candidate(m) for m in samples]), texts)


def _finish(
    samples: Sequence[AIMessage],
    prep: _Prepared,
    scores: list[float] | None,
    *,
    scorer: Any,
    warning: str | None,
) -> tuple[int, dict[str, Any]]:
    """Pick the winner; returns (sample index, metadata dict)."""
    if scores is None:
        sample_index = 0
        index = [c.text for c in prep.cands].index(prep.texts[0])
    else:
        index = pick(prep.cands, scores)
        sample_index = prep.texts.index(prep.cands[index].text)
    meta: dict[str, Any] = {
        "n": len(samples),
        "candidates": [
            {"text": c.text, "count": c.count, "logprob": c.logprob} for c in prep.cands
        ],
        "scores": scores,
        "index": index,
        "sample_index": sample_index,
        "scorer": getattr(scorer, "spec", "") or type(scorer).__name__,
        "warning": warning,
    }
    return sample_index, meta


def _scorer_failed(e: BaseException, on_error: str) -> str:
    if isinstance(e, GraphBubbleUp):
        raise e
    if on_error == "raise":
        if isinstance(e, ScorerError):
            raise e
        raise ScorerError(f"scorer failed: {type(e).__name__}: {e}") from e
    msg = f"scorer failed ({type(e).__name__}: {e}); fell back to the first sample"
    logger.warning(msg)
    return msg


def select_sync(
    samples: Sequence[AIMessage], context: Context, scorer: Any, on_error: OnError = "raise"
) -> tuple[int, dict[str, Any]]:
    """Score the distinct samples once each and pick the best: (winning sample index, metadata).

    With ``on_error="fallback"`` a failing scorer makes the first sample win, with a
    ``warning`` in the metadata; with ``"raise"`` a :class:`~agentq.errors.ScorerError` is
    raised. Interrupts (``GraphBubbleUp``) always pass through.
    """
    prep = _prepare(samples)
    if len(prep.cands) == 1:
        return _finish(samples, prep, None, scorer=scorer, warning=None)
    try:
        scores = _check_scores(scorer.score(context, [c.text for c in prep.cands]), len(prep.cands))
    except Exception as e:  # GraphBubbleUp re-raised; the policy decides the rest
        return _finish(samples, prep, None, scorer=scorer, warning=_scorer_failed(e, on_error))
    return _finish(samples, prep, scores, scorer=scorer, warning=None)


async def aselect(
    samples: Sequence[AIMessage], context: Context, scorer: Any, on_error: OnError = "raise"
) -> tuple[int, dict[str, Any]]:
    """Async twin of :func:`select_sync` (uses ``ascore``, or ``score`` in a worker thread)."""
    prep = _prepare(samples)
    if len(prep.cands) == 1:
        return _finish(samples, prep, None, scorer=scorer, warning=None)
    actions = [c.text for c in prep.cands]
    try:
        if callable(getattr(scorer, "ascore", None)):
            raw = await scorer.ascore(context, actions)
        else:
            raw = await asyncio.to_thread(scorer.score, context, actions)
        scores = _check_scores(raw, len(prep.cands))
    except Exception as e:  # GraphBubbleUp re-raised; the policy decides the rest
        return _finish(samples, prep, None, scorer=scorer, warning=_scorer_failed(e, on_error))
    return _finish(samples, prep, scores, scorer=scorer, warning=None)


def with_selection(message: AIMessage, meta: dict[str, Any]) -> AIMessage:
    """A copy of ``message`` with ``meta`` under :data:`SELECTION_KEY` in its response_metadata."""
    return message.model_copy(
        update={"response_metadata": {**(message.response_metadata or {}), SELECTION_KEY: meta}}
    )


def candidate_config(
    config: RunnableConfig | None, hide_candidates: bool = False
) -> RunnableConfig:
    """The config candidate samples run under: tagged so they never reach the messages stream.

    The tags :data:`NOSTREAM_TAGS` keep LangGraph's ``stream_mode="messages"`` from emitting
    them and :data:`CANDIDATE_TAG` lets other callback handlers tell them apart; tracing still
    sees them. With ``hide_candidates`` the samples run with no callbacks at all.
    """
    cfg: dict[str, Any] = dict(ensure_config(config))
    cfg.pop("run_id", None)
    cfg.pop("run_name", None)
    tags = [t for t in cfg.get("tags") or [] if t not in (*NOSTREAM_TAGS, CANDIDATE_TAG)]
    cfg["tags"] = [*tags, *NOSTREAM_TAGS, CANDIDATE_TAG]
    if hide_candidates:
        cfg["callbacks"] = []
    return cfg  # type: ignore[return-value]


def _unwrap(model: Any) -> tuple[BaseChatModel | None, dict[str, Any]]:
    kwargs: dict[str, Any] = {}
    while isinstance(model, RunnableBinding):
        if model.config_factories:
            return None, {}
        kwargs = {**model.kwargs, **kwargs}
        model = model.bound
    return (model, kwargs) if isinstance(model, BaseChatModel) else (None, {})


def supports_n(model: Any) -> bool:
    """True when the (possibly tool-bound) chat model has an ``n`` setting (one call, N samples)."""
    chat, _ = _unwrap(model)
    return chat is not None and "n" in type(chat).model_fields


def _use_n(model: Any, sampling: str) -> bool:
    if sampling == "concurrent":
        return False
    if sampling == "n":
        if _unwrap(model)[0] is None:
            raise ValueError("sampling='n' needs a chat model (or one bound with bind_tools)")
        return True
    return supports_n(model)


def _as_ai(msg: Any) -> AIMessage:
    if isinstance(msg, AIMessage):
        return msg
    if isinstance(msg, BaseMessage):
        return AIMessage(content=msg.content, id=msg.id)
    return AIMessage(content=str(msg))


def _gather_errors(results: Sequence[Any], n: int) -> tuple[list[AIMessage], str | None]:
    samples: list[AIMessage] = []
    errors: list[BaseException] = []
    for r in results:
        if isinstance(r, GraphBubbleUp):
            raise r
        if isinstance(r, BaseException):
            errors.append(r)
        else:
            samples.append(_as_ai(r))
    if not samples:
        if errors:
            raise errors[0]
        raise ProposerError("the model returned no candidates")
    warning = None
    if errors:
        e = errors[0]
        warning = f"{len(errors)} of {n} samples failed ({type(e).__name__}: {e})"
        logger.warning(warning)
    return samples, warning


class Samples(NamedTuple):
    """What :func:`sample_sync` / :func:`asample` drew.

    ``sampling`` says how: ``"n"`` (one call with the provider's ``n``), ``"concurrent"``
    (``n`` calls of one sample each) or ``"n+concurrent"`` (the model returned fewer than ``n``
    samples for ``n``, and the rest came from concurrent calls).
    """

    samples: list[AIMessage]
    warning: str | None
    sampling: str
    tokens: int | None = None
    """Tokens generated for all the samples, when the model reports them (``usage``)."""


def _message_tokens(msg: AIMessage) -> int | None:
    usage: dict[str, Any] = dict(msg.usage_metadata or {})
    out = usage.get("output_tokens")
    if isinstance(out, int):
        return out
    meta = (msg.response_metadata or {}).get("tokens")
    return meta if isinstance(meta, int) else None


def sample_tokens(msgs: Sequence[AIMessage]) -> int | None:
    """Tokens of separately generated messages (None when none reports any)."""
    counts = [t for t in (_message_tokens(m) for m in msgs) if t is not None]
    return sum(counts) if counts else None


def _n_call_tokens(result: Any, got: Sequence[AIMessage]) -> int | None:
    """Tokens of one ``n`` call: the response's ``completion_tokens`` when the provider gives
    it (``ChatOpenAI`` copies the whole response's usage onto every choice, so summing the
    choices would count it ``n`` times), else the per-generation counts."""
    usage = (getattr(result, "llm_output", None) or {}).get("token_usage") or {}
    total = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if isinstance(total, int) and not isinstance(total, bool):
        return total
    per = [(m.response_metadata or {}).get("tokens") for m in got]
    if per and all(isinstance(t, int) for t in per):
        return sum(per)  # type: ignore[arg-type]
    if len(got) == 1:
        return _message_tokens(got[0])
    return None


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def _join(*warnings: str | None) -> str | None:
    parts = [w for w in warnings if w]
    return "; ".join(parts) if parts else None


@contextlib.contextmanager
def _scope(cfg: RunnableConfig) -> Iterator[None]:
    """Make ``cfg`` the ambient runnable config (so merged configs cannot bring back the
    callbacks that ``hide_candidates`` removed)."""
    token = var_child_runnable_config.set(cfg)
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


def _n_call_kwargs(kwargs: dict[str, Any], n: int) -> dict[str, Any]:
    # ``stream=False``: LangChain routes ``generate`` to ``_stream`` (ONE sample) whenever a
    # streaming callback handler is attached (stream_mode="messages", astream_events); an
    # explicit stream=False is the one opt-out both its v1 and v2 streaming paths honour.
    return {**kwargs, "n": n, "stream": False}


def _single(model: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """``model`` drawing one sample per call (``n=1`` bound when the chat model has ``n``)."""
    chat, kwargs = _unwrap(model)
    if chat is not None and supports_n(chat):
        return chat.bind(**{**kwargs, "n": 1})
    return model


def _short_warning(got: int, n: int) -> str:
    msg = (
        f"the model returned {got} of {n} samples for n={n} (it ignores n); "
        f"drew the other {n - got} with concurrent calls"
    )
    logger.warning(msg)
    return msg


def sample_sync(
    model: Runnable[Any, Any],
    messages: Sequence[BaseMessage],
    n: int,
    config: RunnableConfig | None = None,
    *,
    sampling: Sampling = "auto",
    hide_candidates: bool = False,
) -> Samples:
    """Sample ``n`` candidate messages, kept out of every stream: a :class:`Samples`.

    One call with the provider's ``n`` when the model has that setting (``sampling="auto"`` or
    ``"n"``; sent with ``stream=False`` so a streaming callback cannot turn it into one
    sample), else ``n`` concurrent calls (``model.batch``; ``max_concurrency`` from the
    config). When an ``n`` call returns fewer than ``n`` samples (a server that ignores ``n``)
    the rest come from concurrent calls and the :class:`Samples` say so. Failed samples are
    dropped with a warning; when all fail the first error is raised.
    """
    cfg = candidate_config(config, hide_candidates)
    msgs = list(messages)
    with _scope(cfg):
        if not _use_n(model, sampling):
            results = model.batch([msgs] * n, cfg, return_exceptions=True)
            got, warn = _gather_errors(results, n)
            return Samples(got, warn, "concurrent", sample_tokens(got))
        chat, kwargs = _unwrap(model)
        assert chat is not None
        result = chat.generate(
            [msgs],
            callbacks=cfg.get("callbacks"),
            tags=cfg.get("tags"),
            metadata=cfg.get("metadata"),
            **_n_call_kwargs(kwargs, n),
        )
        got = [_as_ai(getattr(g, "message", g)) for g in result.generations[0]][:n]
        if len(got) >= n:
            return Samples(got, None, "n", _n_call_tokens(result, got))
        short = _short_warning(len(got), n)
        more = _single(model).batch([msgs] * (n - len(got)), cfg, return_exceptions=True)
    samples, warn = _gather_errors([*got, *more], n)
    tokens = _add(_n_call_tokens(result, got), sample_tokens(samples[len(got) :]))
    return Samples(samples, _join(short, warn), "n+concurrent", tokens)


async def asample(
    model: Runnable[Any, Any],
    messages: Sequence[BaseMessage],
    n: int,
    config: RunnableConfig | None = None,
    *,
    sampling: Sampling = "auto",
    hide_candidates: bool = False,
) -> Samples:
    """Async twin of :func:`sample_sync` (``agenerate`` with ``n``, or ``model.abatch``)."""
    cfg = candidate_config(config, hide_candidates)
    msgs = list(messages)
    with _scope(cfg):
        if not _use_n(model, sampling):
            results = await model.abatch([msgs] * n, cfg, return_exceptions=True)
            got, warn = _gather_errors(results, n)
            return Samples(got, warn, "concurrent", sample_tokens(got))
        chat, kwargs = _unwrap(model)
        assert chat is not None
        result = await chat.agenerate(
            [msgs],
            callbacks=cfg.get("callbacks"),
            tags=cfg.get("tags"),
            metadata=cfg.get("metadata"),
            **_n_call_kwargs(kwargs, n),
        )
        got = [_as_ai(getattr(g, "message", g)) for g in result.generations[0]][:n]
        if len(got) >= n:
            return Samples(got, None, "n", _n_call_tokens(result, got))
        short = _short_warning(len(got), n)
        more = await _single(model).abatch([msgs] * (n - len(got)), cfg, return_exceptions=True)
    samples, warn = _gather_errors([*got, *more], n)
    tokens = _add(_n_call_tokens(result, got), sample_tokens(samples[len(got) :]))
    return Samples(samples, _join(short, warn), "n+concurrent", tokens)


# --------------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------------
MORE_STEPS_TEXT = "Sorry, need more steps to process this request."
"""The reply that replaces a tool-calling winner when ``remaining_steps`` has run out
(LangGraph's ``create_react_agent`` wording)."""

CANDIDATES_TASK = "agentq_candidates"
"""Name of the LangGraph task the node draws its candidates in (under a checkpointer), so that
a resume after an interrupt (in the scorer, say) reuses the same candidates."""


def _get(state: Any, key: str, default: Any = None) -> Any:
    if isinstance(state, dict):
        return state.get(key, default)
    return getattr(state, key, default)


def _state_messages(state: Any, key: str) -> list[BaseMessage]:
    msgs = state if isinstance(state, list) else _get(state, key)
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
    msgs = [_as_ai(m) for m in messages_from_dict(d["samples"])]
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
        scorer: Any,
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
        if n < 1:
            raise ValueError("n must be at least 1")
        if on_error not in ("raise", "fallback"):
            raise ValueError("on_error must be 'raise' or 'fallback'")
        if sampling not in ("auto", "n", "concurrent"):
            raise ValueError("sampling must be 'auto', 'n' or 'concurrent'")
        if sampling == "n" and _unwrap(model)[0] is None:
            raise ValueError("sampling='n' needs a chat model (or one bound with bind_tools)")
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
            hooked = _get(state, self.llm_input_key)
            if hooked:
                msgs = list(convert_to_messages(hooked))
                return _with_messages(state, self.messages_key, msgs), msgs
        msgs = _state_messages(state, self.messages_key)
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
        remaining = None if isinstance(state, list) else _get(state, "remaining_steps")
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

    def _update(
        self, state: Any, message: AIMessage, meta: dict[str, Any] | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {self.messages_key: [self._finish_message(state, message)]}
        if self.state_key is not None and meta is not None:
            out[self.state_key] = meta
        return out

    def _how(self) -> Sampling:
        return "concurrent" if self.n_ignored and self.sampling == "auto" else self.sampling

    def _note(self, s: Samples) -> Samples:
        if s.sampling == "n+concurrent" and self.sampling == "auto":
            self.n_ignored = True
        elif self.n_ignored and s.sampling == "concurrent" and self.sampling == "auto":
            note = "the model ignores n; sampled with concurrent calls"
            s = s._replace(warning=_join(note, s.warning))
        return s

    def _meta(self, meta: dict[str, Any], s: Samples) -> dict[str, Any]:
        meta["sampling"] = s.sampling
        meta["tokens"] = s.tokens
        return _merge_warning(meta, s.warning)

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

        with _scope(self._task_config(config)):
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

        with _scope(self._task_config(config)):
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
            return self._update(input, _as_ai(self.model.invoke(msgs, config)), None)
        s = self._note(self._sample(msgs, config))
        i, meta = select_sync(s.samples, to_openai_messages(msgs), self.scorer, self.on_error)
        meta = self._meta(meta, s)
        return self._update(input, with_selection(s.samples[i], meta), meta)

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Select the next message for state ``input`` (async)."""
        config = ensure_config(config)
        msgs = await self._ainputs(input, config)
        if self.n == 1:
            return self._update(input, _as_ai(await self.model.ainvoke(msgs, config)), None)
        s = self._note(await self._asample(msgs, config))
        i, meta = await aselect(s.samples, to_openai_messages(msgs), self.scorer, self.on_error)
        meta = self._meta(meta, s)
        return self._update(input, with_selection(s.samples[i], meta), meta)


def _merge_warning(meta: dict[str, Any], warn: str | None) -> dict[str, Any]:
    if warn:
        meta["warning"] = f"{meta['warning']}; {warn}" if meta.get("warning") else warn
    return meta


def create_selection_node(
    model: Runnable[Any, Any],
    scorer: Any,
    n: int = 5,
    **options: Any,
) -> QValueSelectionNode:
    """Build a :class:`QValueSelectionNode` (``options`` are its keyword arguments)."""
    return QValueSelectionNode(model, scorer, n, **options)


# --------------------------------------------------------------------------------------------
# The prebuilt agent
# --------------------------------------------------------------------------------------------
class QAgentState(MessagesState):
    """State of :func:`create_q_agent`: the messages, LangGraph's managed ``remaining_steps``
    (steps left before the recursion limit) and the latest selection's metadata."""

    remaining_steps: NotRequired[RemainingSteps]
    agentq_selection: NotRequired[dict[str, Any]]


class QAgentStateWithStructuredResponse(QAgentState):
    """:class:`QAgentState` plus ``structured_response`` (with ``response_format``)."""

    structured_response: NotRequired[Any]


def _schema_keys(schema: Any) -> set[str]:
    keys: set[str] = set()
    for klass in getattr(schema, "__mro__", (schema,)):
        keys |= set(getattr(klass, "__annotations__", {}) or {})
    keys |= set(getattr(schema, "model_fields", {}) or {})
    return keys


def _resolve_model(spec: str) -> BaseChatModel:
    """A chat model for a string: ``openai:URL#model`` (an OpenAI-compatible server, through
    langchain-openai's ``ChatOpenAI``), ``provider:model`` (LangChain's ``init_chat_model``),
    else a local MODEL spec (``smollm2``, a directory, a hub id) for ``LocalChatModel``."""
    import os

    if spec.startswith(("openai:http://", "openai:https://")):
        from agentq.integrations.openai_compat import parse_openai_spec

        url, served = parse_openai_spec(spec[len("openai:") :])
        if not served:
            raise ValueError(f"name the served model in {spec!r}: openai:URL#model")
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as e:  # pragma: no cover - dev extra installs it
            raise ImportError(
                "an openai:URL#model string needs langchain-openai (pip install langchain-openai)"
            ) from e
        key = os.environ.get("AGENTQ_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        return ChatOpenAI(base_url=url, model=served, api_key=key)  # type: ignore[arg-type]
    if ":" in spec and not os.path.exists(spec):
        from langchain.chat_models import init_chat_model

        return init_chat_model(spec)  # type: ignore[return-value]
    from agentq.integrations.chat_model import LocalChatModel

    return LocalChatModel(model=spec)


def _bound_tool_names(model: Any) -> set[str] | None:
    """Names of the tools already bound to ``model`` (None when none are bound)."""
    while isinstance(model, RunnableBinding):
        if "tools" in model.kwargs:
            names = set()
            for t in model.kwargs["tools"] or []:
                if isinstance(t, dict):
                    name = (t.get("function") or {}).get("name") or t.get("name")
                    if name:
                        names.add(str(name))
            return names
        model = model.bound
    return None


def _structured_model(model: Runnable[Any, Any], schema: Any) -> Runnable[Any, Any]:
    chat, _ = _unwrap(model)
    if chat is None:
        raise ValueError(
            "response_format needs a chat model (or one bound with bind_tools) to ask for "
            f"structured output; got {type(model).__name__}"
        )
    try:
        return chat.with_structured_output(schema)
    except (NotImplementedError, ValueError, AttributeError, TypeError) as e:
        raise ValueError(
            f"response_format cannot work with {type(chat).__name__}: it has no structured "
            f"output ({type(e).__name__}: {e})"
        ) from e


_UNSUPPORTED_HINTS = {
    "config_schema": "LangGraph replaced it with context_schema",
    "context": "pass the run-time context to invoke/stream (context=...), not to the factory",
}


def _check_unsupported(extra: dict[str, Any], middleware: Sequence[Any], fmt: Any) -> None:
    """One clear ``TypeError`` at construction for what :func:`create_q_agent` cannot honour."""
    if extra:
        hints = [f"{k} ({_UNSUPPORTED_HINTS[k]})" if k in _UNSUPPORTED_HINTS else k for k in extra]
        raise TypeError(
            f"create_q_agent does not support {', '.join(hints)}; docs/langgraph.md lists the "
            "arguments of create_react_agent and create_agent it takes"
        )
    if middleware:
        raise TypeError(
            "create_q_agent takes no middleware: with middleware, build the agent with "
            "langchain.agents.create_agent(model, tools, middleware=[QValueMiddleware(scorer, "
            "n), ...]) (agentq.integrations.langchain)"
        )
    from langchain.agents.structured_output import AutoStrategy, ProviderStrategy, ToolStrategy

    if isinstance(fmt, (ToolStrategy, ProviderStrategy, AutoStrategy)):
        raise TypeError(
            f"create_q_agent's response_format is create_react_agent's (a schema, or "
            f"(prompt, schema)), not create_agent's {type(fmt).__name__}: pass the schema "
            "itself, or use create_agent with QValueMiddleware"
        )


def create_q_agent(
    model: BaseChatModel | Runnable[Any, Any] | str,
    tools: Sequence[BaseTool | Callable[..., Any] | dict[str, Any]] | Any,
    scorer: Any,
    n: int = 5,
    *,
    prompt: PromptLike = None,
    response_format: Any = None,
    pre_model_hook: Any = None,
    post_model_hook: Any = None,
    state_schema: type[Any] | None = None,
    context_schema: type[Any] | None = None,
    checkpointer: Any = None,
    store: Any = None,
    interrupt_before: list[str] | None = None,
    interrupt_after: list[str] | None = None,
    debug: bool = False,
    version: Literal["v1", "v2"] = "v2",
    name: str | None = None,
    system_prompt: str | SystemMessage | None = None,
    middleware: Sequence[Any] = (),
    cache: Any = None,
    transformers: Sequence[Any] | None = None,
    tool_choice: Any = None,
    on_error: OnError = "raise",
    sampling: Sampling = "auto",
    hide_candidates: bool = False,
    **unsupported: Any,
) -> Any:
    """A ReAct agent graph whose model node is the Q-value selection node; compiled.

    It takes the arguments of LangGraph's ``create_react_agent`` with the same meaning, those
    of LangChain's ``create_agent`` it can honour (``system_prompt``, ``cache``,
    ``transformers``), plus the selection's (``scorer``, ``n``, ``tool_choice``, ``on_error``,
    ``sampling``, ``hide_candidates``); docs/langgraph.md has the parity table. An argument
    it cannot honour (``middleware``, a ``ToolStrategy``/``ProviderStrategy`` response format,
    a model chosen at run time, ``create_react_agent``'s removed ``config_schema``) is a
    ``TypeError`` here, at construction. Nodes: ``"agent"`` (the
    :class:`QValueSelectionNode`), ``"tools"`` (a ``ToolNode``), and ``"pre_model_hook"``,
    ``"post_model_hook"``, ``"generate_structured_response"`` when asked for.

    Args:
        model: a chat model (bound here with ``bind_tools(tools, tool_choice=...)`` unless its
            tools are bound already), a bound runnable, or a string: ``"provider:model"``
            (``init_chat_model``), ``"openai:URL#model"`` (an OpenAI-compatible server through
            ``ChatOpenAI``) or a local MODEL spec (``"smollm2"``, a directory) for
            :class:`~agentq.integrations.chat_model.LocalChatModel`. A callable choosing the
            model at run time is not supported (``TypeError``).
        tools: tools, functions, provider tool dicts (bound, not executed), a ``ToolNode``
            (its settings such as ``handle_tool_errors`` kept) or an :class:`EnvTools`.
        prompt: a str or ``SystemMessage`` put first, or a callable / Runnable from the state
            to the model input.
        response_format: a schema (or ``(system prompt, schema)``): once the agent stops
            calling tools, one more model call with ``with_structured_output`` fills
            ``structured_response``. A model without structured output is a ``ValueError``
            here.
        pre_model_hook / post_model_hook: nodes run before / after the agent node; a
            pre-hook's ``llm_input_messages`` become the model input without being stored.
        state_schema: must have ``messages`` (and ``structured_response`` with a
            ``response_format``); default :class:`QAgentState`. ``remaining_steps`` and
            ``agentq_selection`` are used when present.
        context_schema: the graph's runtime context schema.
        version: ``"v2"`` (default, as in LangGraph): each tool call of the winning turn is
            its own task (``Send``), so an ``interrupt()`` in one call does not re-run the
            others on resume; ``"v1"``: one ``ToolNode`` task runs all calls.
        checkpointer, store, interrupt_before, interrupt_after, debug, name, cache,
            transformers: passed to ``compile`` (``name`` also names the winner message, as
            LangGraph does).
        system_prompt: ``create_agent``'s name for a str / ``SystemMessage`` prompt (give
            ``prompt`` or ``system_prompt``, not both).
        middleware: not supported (``TypeError``): with middleware, use
            ``create_agent(..., middleware=[QValueMiddleware(scorer, n), ...])``.
    """
    from langgraph.prebuilt import ToolNode
    from langgraph.prebuilt.tool_node import ToolCallWithContext
    from langgraph.types import Send

    _check_unsupported(unsupported, middleware, response_format)
    if system_prompt is not None:
        if prompt is not None:
            raise ValueError("give prompt or system_prompt, not both")
        if not isinstance(system_prompt, (str, SystemMessage)):
            raise TypeError("system_prompt must be a str or a SystemMessage")
        prompt = system_prompt
    if version not in ("v1", "v2"):
        raise ValueError(f"version must be 'v1' or 'v2', not {version!r}")
    if not isinstance(model, (str, Runnable)) and callable(model):
        raise TypeError(
            "create_q_agent takes one model: a callable that picks the model at run time "
            "(create_react_agent's dynamic model) is not supported"
        )
    prompt = check_prompt(prompt)
    if isinstance(tools, EnvTools):
        tools = tools.tools
    builtin: list[dict[str, Any]] = []
    if isinstance(tools, ToolNode):
        tool_node: Any = tools
        tool_list: list[Any] = list(tools.tools_by_name.values())
    else:
        builtin = [t for t in tools or [] if isinstance(t, dict)]
        tool_list = [t for t in tools or [] if not isinstance(t, dict)]
        tool_node = ToolNode(tool_list) if tool_list else None
        tool_list = list(tool_node.tools_by_name.values()) if tool_node else []
    if isinstance(model, str):
        model = _resolve_model(model)
    bound: Runnable[Any, Any] = model
    already = _bound_tool_names(model)
    if already is not None:
        missing = {t.name for t in tool_list} - already
        if missing:
            raise ValueError(
                f"the model is bound to tools without {sorted(missing)}: bind all the agent's "
                "tools, or pass an unbound model"
            )
    elif (tool_list or builtin) and isinstance(model, BaseChatModel):
        kw = {"tool_choice": tool_choice} if tool_choice is not None else {}
        bound = model.bind_tools([*tool_list, *builtin], **kw)
    schema = state_schema or (
        QAgentStateWithStructuredResponse if response_format is not None else QAgentState
    )
    keys = _schema_keys(schema)
    needed = {"messages"} | ({"structured_response"} if response_format is not None else set())
    if needed - keys:
        raise ValueError(f"state_schema lacks the key(s) {sorted(needed - keys)}")
    structured: Runnable[Any, Any] | None = None
    structured_prompt: SystemMessage | None = None
    if response_format is not None:
        fmt = response_format
        if isinstance(fmt, tuple):
            structured_prompt, fmt = SystemMessage(content=fmt[0]), fmt[1]
        structured = _structured_model(bound, fmt)
    direct = [t.name for t in tool_list if getattr(t, "return_direct", False)]
    node = QValueSelectionNode(
        bound,
        scorer,
        n,
        prompt=prompt,
        on_error=on_error,
        sampling=sampling,
        hide_candidates=hide_candidates,
        state_key=SELECTION_KEY if SELECTION_KEY in keys else None,
        agent_name=name,
        llm_input_key="llm_input_messages" if pre_model_hook is not None else None,
        return_direct=direct,
    )

    graph = StateGraph(schema, context_schema=context_schema)
    if pre_model_hook is not None:
        fields = {**_annotations(schema), "llm_input_messages": list[AnyMessage]}
        make_typed_dict: Any = TypedDict
        input_schema = make_typed_dict("QAgentModelInput", fields, total=False)
        graph.add_node("agent", node, input_schema=input_schema)
        graph.add_node("pre_model_hook", pre_model_hook)
        graph.add_edge("pre_model_hook", "agent")
        entry = "pre_model_hook"
    else:
        graph.add_node("agent", node)
        entry = "agent"
    graph.add_edge(START, entry)
    after_loop = END
    if structured is not None:

        def generate_structured_response(state: Any, config: RunnableConfig) -> dict[str, Any]:
            msgs = _state_messages(state, "messages")
            if structured_prompt is not None:
                msgs = [structured_prompt, *msgs]
            return {"structured_response": structured.invoke(msgs, config)}

        async def agenerate_structured_response(
            state: Any, config: RunnableConfig
        ) -> dict[str, Any]:
            msgs = _state_messages(state, "messages")
            if structured_prompt is not None:
                msgs = [structured_prompt, *msgs]
            return {"structured_response": await structured.ainvoke(msgs, config)}

        from langgraph._internal._runnable import RunnableCallable

        graph.add_node(
            "generate_structured_response",
            RunnableCallable(generate_structured_response, agenerate_structured_response),
        )
        graph.add_edge("generate_structured_response", END)
        after_loop = "generate_structured_response"

    def tool_sends(state: Any, calls: Sequence[Any]) -> Any:
        if version == "v1":
            return "tools"
        return [
            Send(
                "tools",
                ToolCallWithContext(
                    __type="tool_call_with_context",
                    tool_call=call,  # type: ignore[typeddict-item]
                    state=state,
                ),
            )
            for call in calls
        ]

    def after_agent(state: Any) -> Any:
        msgs = _get(state, "messages") or []
        last = msgs[-1] if msgs else None
        if post_model_hook is not None:
            return "post_model_hook"
        if tool_node is None or not (isinstance(last, AIMessage) and last.tool_calls):
            return after_loop
        return tool_sends(state, last.tool_calls)

    if post_model_hook is not None:
        graph.add_node("post_model_hook", post_model_hook)
        graph.add_edge("agent", "post_model_hook")

        def after_post_hook(state: Any) -> Any:
            msgs = list(_get(state, "messages") or [])
            done = {m.tool_call_id for m in msgs if isinstance(m, ToolMessage)}
            last_ai = next((m for m in reversed(msgs) if isinstance(m, AIMessage)), None)
            pending = [
                c for c in (last_ai.tool_calls if last_ai else []) if c.get("id") not in done
            ]
            if pending and tool_node is not None:
                return tool_sends(state, pending)
            if msgs and isinstance(msgs[-1], ToolMessage):
                return entry
            return after_loop

        paths = [entry, after_loop] + (["tools"] if tool_node is not None else [])
        graph.add_conditional_edges("post_model_hook", after_post_hook, paths)
    else:
        paths = [after_loop] + (["tools"] if tool_node is not None else [])
        graph.add_conditional_edges("agent", after_agent, paths)
    if tool_node is not None:
        graph.add_node("tools", tool_node)
        if direct:

            def after_tools(state: Any) -> str:
                msgs = list(_get(state, "messages") or [])
                for m in reversed(msgs):
                    if not isinstance(m, ToolMessage):
                        if isinstance(m, AIMessage) and any(
                            c["name"] in direct for c in m.tool_calls
                        ):
                            return END
                        break
                    if m.name in direct:
                        return END
                return entry

            graph.add_conditional_edges("tools", after_tools, [entry, END])
        else:
            graph.add_edge("tools", entry)
    return graph.compile(
        checkpointer=checkpointer,
        store=store,
        interrupt_before=interrupt_before,
        interrupt_after=interrupt_after,
        debug=debug,
        name=name or "q_agent",
        cache=cache,
        transformers=transformers,
    )


def _annotations(schema: Any) -> dict[str, Any]:
    from typing import get_type_hints

    try:
        hints = get_type_hints(schema, include_extras=True)
    except Exception:  # noqa: BLE001 - fall back to the raw annotations
        hints = {}
        for klass in reversed(getattr(schema, "__mro__", (schema,))):
            hints.update(getattr(klass, "__annotations__", {}) or {})
    return hints


# --------------------------------------------------------------------------------------------
# Environments as tools, rollouts
# --------------------------------------------------------------------------------------------
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

    def __init__(self, scorer: Any, env_tools: EnvTools) -> None:
        self.scorer = scorer
        self.env_tools = env_tools
        self.spec = getattr(scorer, "spec", "") or type(scorer).__name__

    def _args(self, context: Context, actions: Sequence[str]) -> tuple[Context, list[str]]:
        return self.env_tools.env_context(context), [
            self.env_tools.env_action_text(a) for a in actions
        ]

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Score with the wrapped scorer on env action texts."""
        return list(self.scorer.score(*self._args(context, actions)))

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Async twin of :meth:`score`."""
        ctx, acts = self._args(context, actions)
        if callable(getattr(self.scorer, "ascore", None)):
            return list(await self.scorer.ascore(ctx, acts))
        return list(await asyncio.to_thread(self.scorer.score, ctx, acts))


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
        env: Any,
        *,
        name: str = "act",
        description: str | None = None,
        mode: Literal["act", "verbs"] = "act",
    ) -> None:
        import threading

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
        import json

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

    def env_scorer(self, scorer: Any) -> EnvActionScorer:
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


@dataclass
class RolloutResult:
    """Trajectories of one rollout and their metrics."""

    trajectories: list[Trajectory]
    wall_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """Fraction of tasks with full reward."""
        return self.metrics.get("success_rate", 0.0)

    @property
    def mean_reward(self) -> float:
        """Mean total reward per task."""
        return self.metrics.get("mean_reward", 0.0)

    @property
    def mean_steps(self) -> float:
        """Mean number of environment steps per task."""
        return self.metrics.get("mean_steps", 0.0)


def rollout_metrics(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Success rate, mean reward, mean steps, invalid-action rate, errors and model calls."""
    k = len(trajectories)
    if not k:
        return {
            "tasks": 0,
            "success_rate": 0.0,
            "mean_reward": 0.0,
            "mean_steps": 0.0,
            "invalid_rate": 0.0,
            "errors": 0,
            "model_calls": 0,
        }
    steps = sum(len(t.steps) for t in trajectories)
    invalid = sum(1 for t in trajectories for s in t.steps if s.info.get("invalid"))
    return {
        "tasks": k,
        "success_rate": sum(t.success for t in trajectories) / k,
        "mean_reward": sum(t.reward for t in trajectories) / k,
        "mean_steps": steps / k,
        "invalid_rate": invalid / steps if steps else 0.0,
        "errors": sum(1 for t in trajectories if t.error),
        "model_calls": sum(t.model_calls for t in trajectories),
    }


def _reseed(env: Any, seed: int, task_id: str) -> None:
    from agentq.search.mcts import task_seed

    s = task_seed(seed, task_id)
    if callable(getattr(env, "seed", None)):
        env.seed(s)
    random.seed(s)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(s)


def _build_trajectory(et: EnvTools, task_id: str, messages: Sequence[BaseMessage]) -> Trajectory:
    by_call: dict[str, AIMessage] = {}
    by_id: dict[str, AIMessage] = {}
    calls = tokens = 0
    for m in messages:
        if isinstance(m, AIMessage):
            sel = selection_of(m)
            calls += int(sel["n"]) if sel else 1
            if sel and isinstance(sel.get("tokens"), int):
                tokens += int(sel["tokens"])  # every sample's tokens, not the winner's alone
            else:
                tokens += _message_tokens(m) or 0
            if m.id:
                by_id[m.id] = m
            for c in m.tool_calls:
                if c.get("id"):
                    by_call[str(c["id"])] = m
    steps = []
    for r in et.records:
        ai = by_call.get(r.tool_call_id or "") or by_id.get(r.message_id or "")
        action = (
            candidate_text(ai)
            if ai is not None
            else render_tool_call(et.name, {"action": r.action})
        )
        sel = selection_of(ai) if ai is not None else None
        steps.append(
            Step(
                action=action,
                observation=r.result.observation,
                reward=float(r.result.reward),
                done=bool(r.result.done),
                info=dict(r.result.info or {}),
                selection=dict(sel) if sel else None,
            )
        )
    return Trajectory(
        task_id=task_id,
        context=list(et.context),
        steps=steps,
        reward=et.reward,
        done=et.done,
        model_calls=calls,
        tokens=tokens,
    )


def _rollout_setup(agent: Any, env: Any) -> tuple[Any, EnvTools]:
    et = env if isinstance(env, EnvTools) else EnvTools(env)
    if not isinstance(agent, Runnable) and callable(agent):
        agent = agent(et.tools)
    return agent, et


def _task_list(
    et: EnvTools, split: str, tasks: Sequence[str] | None, limit: int | None
) -> list[str]:
    ids = list(tasks) if tasks is not None else list(et.env.tasks(split))
    return ids[:limit] if limit is not None else ids


def _text_turn(et: EnvTools, messages: Sequence[BaseMessage]) -> AIMessage | None:
    last = messages[-1] if messages else None
    if isinstance(last, AIMessage) and not last.tool_calls and _text(last.content).strip():
        return last
    return None


def _config_for(config: RunnableConfig | None, task_id: str, max_steps: int) -> RunnableConfig:
    cfg: dict[str, Any] = dict(config or {})
    configurable = dict(cfg.get("configurable") or {})
    configurable.setdefault("thread_id", f"agentq-rollout-{task_id}-{uuid.uuid4().hex[:8]}")
    cfg["configurable"] = configurable
    cfg.setdefault("recursion_limit", 4 * max_steps + 10)
    return cfg  # type: ignore[return-value]


def rollout(
    agent: Any,
    env: EnvTools | Any,
    *,
    split: str = "test",
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    max_steps: int | None = None,
    text_actions: bool = True,
    seed: int = 0,
    config: RunnableConfig | None = None,
    progress: bool = False,
) -> RolloutResult:
    """Run a compiled LangGraph agent over an environment's tasks; trajectories and metrics.

    ``agent`` is a compiled graph built with ``env.tools`` (``env`` an :class:`EnvTools`) and
    taking ``{"messages": [...]}``, or a callable ``tools -> compiled graph`` (then ``env`` may
    be a plain agentq environment). Each task starts from the environment's context; the run
    stops as soon as the episode is done. With ``text_actions`` an assistant turn that ends the
    graph without a tool call is executed as a text action and its observation sent back as a
    user message (``Observation: ...``), so text-acting agents work too. At most ``max_steps``
    environment steps per task (default: the environment's ``max_steps``). An exception in one
    task is recorded in its trajectory's ``error`` and the rollout goes on.
    """
    agent, et = _rollout_setup(agent, env)
    limit_steps = max_steps or int(getattr(et.env, "max_steps", 0) or 15)
    ids = _task_list(et, split, tasks, limit)
    trajectories = []
    t0 = time.perf_counter()
    bar = _bar(len(ids), progress)
    for tid in ids:
        ts = time.perf_counter()
        _reseed(et.env, seed, tid)
        messages: list[BaseMessage] = et.reset(tid)
        cfg = _config_for(config, tid, limit_steps)
        error = None
        try:
            while True:
                for chunk in agent.stream({"messages": messages}, cfg, stream_mode="values"):
                    if isinstance(chunk, dict) and "messages" in chunk:
                        messages = list(chunk["messages"])
                    if et.done or len(et.records) >= limit_steps:
                        break
                if not _continue_text(et, messages, text_actions, limit_steps):
                    break
                messages = [
                    *messages,
                    HumanMessage(content=f"Observation: {et.records[-1].result.observation}"),
                ]
        except Exception as e:  # noqa: BLE001 - recorded, the rollout goes on
            if isinstance(e, GraphBubbleUp):
                raise
            error = f"{type(e).__name__}: {e}"
        traj = _build_trajectory(et, tid, messages)
        traj.error = error
        traj.wall_s = time.perf_counter() - ts
        trajectories.append(traj)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return RolloutResult(trajectories, time.perf_counter() - t0, rollout_metrics(trajectories))


def _continue_text(
    et: EnvTools, messages: Sequence[BaseMessage], text_actions: bool, limit: int
) -> bool:
    if et.done or len(et.records) >= limit or not text_actions:
        return False
    turn = _text_turn(et, messages)
    if turn is None:
        return False
    et.step(_text(turn.content), message_id=turn.id)
    return not et.done and len(et.records) < limit


async def arollout(
    agent: Any,
    env: EnvTools | Any,
    *,
    split: str = "test",
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    max_steps: int | None = None,
    text_actions: bool = True,
    seed: int = 0,
    config: RunnableConfig | None = None,
    progress: bool = False,
) -> RolloutResult:
    """Async twin of :func:`rollout` (``agent.astream``; tasks run one after another, since an
    environment runs one episode at a time)."""
    agent, et = _rollout_setup(agent, env)
    limit_steps = max_steps or int(getattr(et.env, "max_steps", 0) or 15)
    ids = _task_list(et, split, tasks, limit)
    trajectories = []
    t0 = time.perf_counter()
    bar = _bar(len(ids), progress)
    for tid in ids:
        ts = time.perf_counter()
        _reseed(et.env, seed, tid)
        messages: list[BaseMessage] = et.reset(tid)
        cfg = _config_for(config, tid, limit_steps)
        error = None
        try:
            while True:
                async for chunk in agent.astream({"messages": messages}, cfg, stream_mode="values"):
                    if isinstance(chunk, dict) and "messages" in chunk:
                        messages = list(chunk["messages"])
                    if et.done or len(et.records) >= limit_steps:
                        break
                if not _continue_text(et, messages, text_actions, limit_steps):
                    break
                messages = [
                    *messages,
                    HumanMessage(content=f"Observation: {et.records[-1].result.observation}"),
                ]
        except Exception as e:  # noqa: BLE001
            if isinstance(e, GraphBubbleUp):
                raise
            error = f"{type(e).__name__}: {e}"
        traj = _build_trajectory(et, tid, messages)
        traj.error = error
        traj.wall_s = time.perf_counter() - ts
        trajectories.append(traj)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return RolloutResult(trajectories, time.perf_counter() - t0, rollout_metrics(trajectories))


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="rollout", unit="task")


__all__ = [
    "CANDIDATE_TAG",
    "SELECTION_KEY",
    "EnvActionScorer",
    "EnvTools",
    "QAgentState",
    "QValueSelectionNode",
    "RolloutResult",
    "aselect",
    "arollout",
    "asample",
    "candidate_config",
    "candidate_text",
    "create_q_agent",
    "create_selection_node",
    "rollout",
    "rollout_metrics",
    "sample_sync",
    "select_sync",
    "selection_of",
    "supports_n",
    "to_openai_messages",
    "with_selection",
]
