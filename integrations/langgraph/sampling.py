"""Drawing N candidate messages from a LangChain chat model, kept out of every stream.

One call with the provider's ``n`` when the model has that setting, else ``n`` concurrent
calls; a server that ignores ``n`` gets the rest drawn concurrently. Candidate runs are tagged
(:data:`NOSTREAM_TAGS`, :data:`CANDIDATE_TAG`) so only the selected message reaches LangGraph's
``stream_mode="messages"``. Used by the selection node (and, for the tags, the middleware).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, ensure_config
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.errors import GraphBubbleUp

from agentq.errors import ProposerError
from agentq.types import join_warnings

logger = logging.getLogger("agentq.integrations.langgraph")

CANDIDATE_TAG = "agentq:candidate"
"""Tag on every candidate-sampling model run (so callback handlers can filter them)."""

NOSTREAM_TAGS = ("nostream", "langsmith:nostream")
"""Tags that keep a model run out of LangGraph's ``stream_mode="messages"`` (1.x and 0.x)."""

Sampling = Literal["auto", "n", "concurrent"]


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


@contextlib.contextmanager
def config_scope(cfg: RunnableConfig) -> Iterator[None]:
    """Make ``cfg`` the ambient runnable config (so merged configs cannot bring back the
    callbacks that ``hide_candidates`` removed)."""
    token = var_child_runnable_config.set(cfg)
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


def unwrap(model: Any) -> tuple[BaseChatModel | None, dict[str, Any]]:
    """The chat model under ``bind``/``bind_tools`` bindings and their merged kwargs
    (``(None, {})`` when ``model`` is not a chat model, or is configured at run time)."""
    kwargs: dict[str, Any] = {}
    while isinstance(model, RunnableBinding):
        if model.config_factories:
            return None, {}
        kwargs = {**model.kwargs, **kwargs}
        model = model.bound
    return (model, kwargs) if isinstance(model, BaseChatModel) else (None, {})


def supports_n(model: Any) -> bool:
    """True when the (possibly tool-bound) chat model has an ``n`` setting (one call, N samples)."""
    chat, _ = unwrap(model)
    return chat is not None and "n" in type(chat).model_fields


def check_sampling(model: Any, sampling: str) -> None:
    """``ValueError`` for a ``sampling`` setting the model cannot honour."""
    if sampling not in ("auto", "n", "concurrent"):
        raise ValueError("sampling must be 'auto', 'n' or 'concurrent'")
    if sampling == "n" and unwrap(model)[0] is None:
        raise ValueError("sampling='n' needs a chat model (or one bound with bind_tools)")


def _use_n(model: Any, sampling: str) -> bool:
    check_sampling(model, sampling)
    return sampling == "n" or (sampling == "auto" and supports_n(model))


def as_ai(msg: Any) -> AIMessage:
    """``msg`` as an ``AIMessage`` (a model may return another message type, or a str)."""
    if isinstance(msg, AIMessage):
        return msg
    if isinstance(msg, BaseMessage):
        return AIMessage(content=msg.content, id=msg.id)
    return AIMessage(content=str(msg))


def usable_results(results: Sequence[Any], n: int) -> tuple[list[Any], str | None]:
    """The results of ``n`` sample calls that did not fail, and a warning naming the failures.

    Interrupts (``GraphBubbleUp``) are raised; when every call failed the first error is.
    """
    ok: list[Any] = []
    errors: list[BaseException] = []
    for r in results:
        if isinstance(r, GraphBubbleUp):
            raise r
        (errors if isinstance(r, BaseException) else ok).append(r)
    if not ok:
        raise errors[0] if errors else ProposerError("the model returned no candidates")
    warning = None
    if errors:
        e = errors[0]
        warning = f"{len(errors)} of {n} samples failed ({type(e).__name__}: {e})"
        logger.warning(warning)
    return ok, warning


def _gather(results: Sequence[Any], n: int) -> tuple[list[AIMessage], str | None]:
    ok, warning = usable_results(results, n)
    return [as_ai(r) for r in ok], warning


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


def message_tokens(msg: AIMessage) -> int | None:
    """Tokens the model generated for ``msg``, when it says (usage or ``tokens`` metadata)."""
    usage: dict[str, Any] = dict(msg.usage_metadata or {})
    out = usage.get("output_tokens")
    if isinstance(out, int):
        return out
    meta = (msg.response_metadata or {}).get("tokens")
    return meta if isinstance(meta, int) else None


def sample_tokens(msgs: Sequence[AIMessage]) -> int | None:
    """Tokens of separately generated messages (None when none reports any)."""
    counts = [t for t in (message_tokens(m) for m in msgs) if t is not None]
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
        return message_tokens(got[0])
    return None


def _n_call_kwargs(kwargs: dict[str, Any], n: int) -> dict[str, Any]:
    # ``stream=False``: LangChain routes ``generate`` to ``_stream`` (ONE sample) whenever a
    # streaming callback handler is attached (stream_mode="messages", astream_events); an
    # explicit stream=False is the one opt-out both its v1 and v2 streaming paths honour.
    return {**kwargs, "n": n, "stream": False}


def _single(model: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """``model`` drawing one sample per call (``n=1`` bound when the chat model has ``n``)."""
    chat, kwargs = unwrap(model)
    if chat is not None and supports_n(chat):
        return chat.bind(**{**kwargs, "n": 1})
    return model


class _NCall:
    """One call with the provider's ``n``: its arguments, then what it returned."""

    def __init__(self, model: Runnable[Any, Any], cfg: RunnableConfig, n: int) -> None:
        chat, kwargs = unwrap(model)
        assert chat is not None
        self.chat = chat
        self.n = n
        self.kwargs: dict[str, Any] = {
            "callbacks": cfg.get("callbacks"),
            "tags": cfg.get("tags"),
            "metadata": cfg.get("metadata"),
            **_n_call_kwargs(kwargs, n),
        }
        self.result: Any = None
        self.got: list[AIMessage] = []

    def took(self, result: Any) -> Samples | None:
        """Record the call's result: the :class:`Samples` when it gave all ``n``, else None
        (then :attr:`missing` more are drawn concurrently)."""
        self.result = result
        self.got = [as_ai(getattr(g, "message", g)) for g in result.generations[0]][: self.n]
        if len(self.got) >= self.n:
            return Samples(self.got, None, "n", _n_call_tokens(result, self.got))
        return None

    @property
    def missing(self) -> int:
        return self.n - len(self.got)

    def short_warning(self) -> str:
        got, n = len(self.got), self.n
        msg = (
            f"the model returned {got} of {n} samples for n={n} (it ignores n); "
            f"drew the other {n - got} with concurrent calls"
        )
        logger.warning(msg)
        return msg

    def topped_up(self, more: Sequence[Any], short: str) -> Samples:
        """The :class:`Samples` of the ``n`` call plus the concurrent calls' results."""
        samples, warn = _gather([*self.got, *more], self.n)
        tokens = _n_call_tokens(self.result, self.got)
        extra = sample_tokens(samples[len(self.got) :])
        total = None if tokens is None and extra is None else (tokens or 0) + (extra or 0)
        return Samples(samples, join_warnings(short, warn), "n+concurrent", total)


def _concurrent(results: Sequence[Any], n: int) -> Samples:
    got, warn = _gather(results, n)
    return Samples(got, warn, "concurrent", sample_tokens(got))


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
    with config_scope(cfg):
        if not _use_n(model, sampling):
            return _concurrent(model.batch([msgs] * n, cfg, return_exceptions=True), n)
        call = _NCall(model, cfg, n)
        done = call.took(call.chat.generate([msgs], **call.kwargs))
        if done is not None:
            return done
        short = call.short_warning()
        more = _single(model).batch([msgs] * call.missing, cfg, return_exceptions=True)
    return call.topped_up(more, short)


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
    with config_scope(cfg):
        if not _use_n(model, sampling):
            return _concurrent(await model.abatch([msgs] * n, cfg, return_exceptions=True), n)
        call = _NCall(model, cfg, n)
        done = call.took(await call.chat.agenerate([msgs], **call.kwargs))
        if done is not None:
            return done
        short = call.short_warning()
        more = await _single(model).abatch([msgs] * call.missing, cfg, return_exceptions=True)
    return call.topped_up(more, short)


__all__ = [
    "CANDIDATE_TAG",
    "NOSTREAM_TAGS",
    "Sampling",
    "Samples",
    "as_ai",
    "asample",
    "candidate_config",
    "check_sampling",
    "config_scope",
    "message_tokens",
    "sample_sync",
    "sample_tokens",
    "supports_n",
    "unwrap",
    "usable_results",
]
