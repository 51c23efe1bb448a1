"""Choosing among sampled chat messages: an adapter over the core selection step.

The LangGraph node and the LangChain middleware both call :func:`select_messages` /
:func:`aselect_messages`: each sampled ``AIMessage`` becomes a
:class:`~agentq.types.Candidate` (its canonical action text, log-prob and tokens when known),
and :func:`agentq.search.selection.select` merges, scores, validates, applies the error policy
and picks. The :class:`~agentq.types.Selection` it returns, with how the samples were drawn,
is stored as ``Selection.to_dict()`` under :data:`SELECTION_KEY`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentq.integrations.langgraph.messages import candidate_text
from agentq.integrations.langgraph.sampling import Samples
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.errors import GraphBubbleUp

from agentq.protocols import Scorer
from agentq.search import selection as core
from agentq.search.selection import OnError
from agentq.types import Candidate, Context, Selection

SELECTION_KEY = "agentq_selection"
"""The one key under which selection metadata is stored (response_metadata and state)."""

_PASSTHROUGH = (GraphBubbleUp,)
"""Raised by a scorer, these always propagate (LangGraph's interrupts), whatever ``on_error``."""


def check_policy(n: int, on_error: str) -> None:
    """``ValueError`` for a candidate count or an error policy the selection cannot use."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if on_error not in ("raise", "fallback"):
        raise ValueError("on_error must be 'raise' or 'fallback'")


def message_candidate(msg: AIMessage) -> Candidate:
    """A sampled message as a :class:`Candidate`: canonical action text, log-prob, tokens."""
    lp = (msg.response_metadata or {}).get("logprob")
    usage: dict[str, Any] = dict(msg.usage_metadata or {})
    return Candidate(
        candidate_text(msg),
        logprob=float(lp) if isinstance(lp, (int, float)) else None,
        tokens=usage.get("output_tokens"),
    )


def _noted(sel: Selection, drawn: Samples | None) -> Selection:
    if drawn is not None:
        sel.sampling = drawn.sampling
        sel.tokens = drawn.tokens
        sel.add_warning(drawn.warning)
    return sel


def select_messages(
    samples: Sequence[AIMessage],
    context: Context,
    scorer: Scorer,
    on_error: OnError = "raise",
    *,
    drawn: Samples | None = None,
) -> Selection:
    """Score the distinct samples once each and pick the best (sync).

    ``drawn`` (how the samples were drawn: sampling mode, tokens, sample failures) is recorded
    in the :class:`Selection`. With ``on_error="fallback"`` a failing scorer makes the first
    sample win, with a ``warning``; with ``"raise"`` a :class:`~agentq.errors.ScorerError` is
    raised. Interrupts (``GraphBubbleUp``) always pass through. An empty message is a
    candidate like any other.
    """
    cands = [message_candidate(m) for m in samples]
    sel = core.select(
        cands, context, scorer, on_error=on_error, passthrough=_PASSTHROUGH, allow_blank=True
    )
    return _noted(sel, drawn)


async def aselect_messages(
    samples: Sequence[AIMessage],
    context: Context,
    scorer: Scorer,
    on_error: OnError = "raise",
    *,
    drawn: Samples | None = None,
) -> Selection:
    """Async twin of :func:`select_messages` (``ascore``, or ``score`` in a worker thread)."""
    cands = [message_candidate(m) for m in samples]
    sel = await core.aselect(
        cands, context, scorer, on_error=on_error, passthrough=_PASSTHROUGH, allow_blank=True
    )
    return _noted(sel, drawn)


def select_sync(
    samples: Sequence[AIMessage], context: Context, scorer: Scorer, on_error: OnError = "raise"
) -> tuple[int, dict[str, Any]]:
    """:func:`select_messages` as (winning sample index, ``Selection.to_dict()``)."""
    sel = select_messages(samples, context, scorer, on_error)
    return int(sel.sample_index or 0), sel.to_dict()


async def aselect(
    samples: Sequence[AIMessage], context: Context, scorer: Scorer, on_error: OnError = "raise"
) -> tuple[int, dict[str, Any]]:
    """Async twin of :func:`select_sync`."""
    sel = await aselect_messages(samples, context, scorer, on_error)
    return int(sel.sample_index or 0), sel.to_dict()


def with_selection(message: AIMessage, meta: dict[str, Any] | Selection) -> AIMessage:
    """A copy of ``message`` with the selection metadata under :data:`SELECTION_KEY` in its
    response_metadata."""
    if isinstance(meta, Selection):
        meta = meta.to_dict()
    return message.model_copy(
        update={"response_metadata": {**(message.response_metadata or {}), SELECTION_KEY: meta}}
    )


def selection_of(message: BaseMessage | None) -> dict[str, Any] | None:
    """The selection metadata a selected ``AIMessage`` carries (None for other messages)."""
    meta = getattr(message, "response_metadata", None) or {}
    value = meta.get(SELECTION_KEY)
    return value if isinstance(value, dict) else None


__all__ = [
    "SELECTION_KEY",
    "aselect",
    "aselect_messages",
    "check_policy",
    "message_candidate",
    "select_messages",
    "select_sync",
    "selection_of",
    "with_selection",
]
