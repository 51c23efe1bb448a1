"""LangChain middleware: Q-value-guided action selection for ``langchain.agents.create_agent``.

::

    from langchain.agents import create_agent
    from agentq.integrations.langchain import QValueMiddleware

    agent = create_agent(model, tools, middleware=[QValueMiddleware(scorer, n=5)])

At each model call the middleware calls the agent's model handler ``n`` times (concurrently), so
tool binding, ``tool_choice``, model settings, structured output and any inner middleware keep
working, scores the distinct candidates' canonical action texts
(:func:`agentq.render.render_action`) with the agentq ``Scorer``, and returns the best response.
Candidate runs are tagged ``nostream`` so only the winner reaches ``stream_mode="messages"``.
The middleware is an adapter over the core selection step (through
:mod:`agentq.integrations.langgraph.selection`, as the LangGraph node is): its
``Selection.to_dict()`` goes to the winner's ``response_metadata["agentq_selection"]`` and to
the agent state's ``"agentq_selection"`` key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, NotRequired

from agentq.integrations.langgraph.messages import to_openai_messages
from agentq.integrations.langgraph.sampling import (
    Samples,
    candidate_config,
    config_scope,
    sample_tokens,
    usable_results,
)
from agentq.integrations.langgraph.selection import (
    SELECTION_KEY,
    aselect_messages,
    check_policy,
    select_messages,
    with_selection,
)
from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables.config import (
    ContextThreadPoolExecutor,
    var_child_runnable_config,
)
from langgraph.types import Command

from agentq.errors import ProposerError
from agentq.protocols import Scorer
from agentq.search.selection import OnError
from agentq.types import Context, Selection


class QValueState(AgentState[Any]):
    """Agent state with the latest selection's metadata under ``"agentq_selection"``."""

    agentq_selection: NotRequired[dict[str, Any]]


def _candidate_scope(hide_candidates: bool) -> contextlib.AbstractContextManager[None]:
    """Run model calls inside this block as tagged (non-streaming) candidate runs."""
    return config_scope(candidate_config(var_child_runnable_config.get(), hide_candidates))


def _ai_of(response: Any) -> tuple[int, AIMessage]:
    """(position, message) of the assistant message a handler response carries."""
    if isinstance(response, AIMessage):
        return -1, response
    result = getattr(response, "result", None) or []
    for i, m in enumerate(result):
        if isinstance(m, AIMessage):
            return i, m
    raise ProposerError("the model call returned no AIMessage")


class QValueMiddleware(AgentMiddleware[QValueState, Any, Any]):
    """Best-of-N model calls ranked by an agentq Scorer (``wrap_model_call`` + async twin).

    Args:
        scorer: any agentq Scorer (``score``/``ascore``): a Q-model, a served one, a reward model.
        n: candidates per model call; ``1`` is a plain pass-through with no scoring.
        on_error: ``"raise"`` (a :class:`~agentq.errors.ScorerError`) or ``"fallback"`` (the
            first sample wins, with a ``warning`` in the metadata) when the scorer fails.
        max_concurrency: at most this many concurrent candidate calls (default: all ``n``).
        hide_candidates: run candidate calls with no callbacks at all (tracing included);
            by default they are traced but tagged ``nostream`` and ``agentq:candidate``.
        state_key: also write the metadata to the agent state (``"agentq_selection"``).
    """

    state_schema = QValueState

    def __init__(
        self,
        scorer: Scorer,
        n: int = 5,
        *,
        on_error: OnError = "raise",
        max_concurrency: int | None = None,
        hide_candidates: bool = False,
        state_key: bool = True,
    ) -> None:
        super().__init__()
        check_policy(n, on_error)
        self.scorer = scorer
        self.n = n
        self.on_error: OnError = on_error
        self.max_concurrency = max_concurrency
        self.hide_candidates = hide_candidates
        self.state_key = state_key
        self.tools = []

    @property
    def name(self) -> str:
        """Middleware name (``QValueMiddleware``)."""
        return "QValueMiddleware"

    def _context(self, request: ModelRequest[Any]) -> Context:
        msgs: list[BaseMessage] = list(request.messages)
        if request.system_message is not None:
            msgs = [request.system_message, *msgs]
        return to_openai_messages(msgs)

    def _drawn(self, results: list[Any]) -> tuple[list[Any], list[AIMessage], Samples]:
        """The usable responses, their messages, and how they were drawn."""
        responses, warn = usable_results(results, self.n)
        samples = [_ai_of(r)[1] for r in responses]
        return responses, samples, Samples(samples, warn, "concurrent", sample_tokens(samples))

    def _result(self, responses: list[Any], sel: Selection) -> Any:
        meta = sel.to_dict()
        response = responses[sel.sample_index or 0]
        pos, msg = _ai_of(response)
        winner = with_selection(msg, meta)
        if pos < 0:
            model_response = ModelResponse(result=[winner])
        else:
            result = list(response.result)
            result[pos] = winner
            model_response = ModelResponse(
                result=result, structured_response=response.structured_response
            )
        if not self.state_key:
            return model_response
        return ExtendedModelResponse(
            model_response=model_response, command=Command(update={SELECTION_KEY: meta})
        )

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> Any:
        """Call ``handler`` ``n`` times (threads), score the candidates, return the best."""
        if self.n == 1:
            return handler(request)
        workers = max(1, min(self.n, self.max_concurrency or self.n))
        results: list[Any] = []
        with (
            _candidate_scope(self.hide_candidates),
            ContextThreadPoolExecutor(max_workers=workers) as pool,
        ):
            futures = [pool.submit(handler, request) for _ in range(self.n)]
            for f in futures:
                try:
                    results.append(f.result())
                except Exception as e:  # kept; GraphBubbleUp re-raised in usable_results
                    results.append(e)
        responses, samples, drawn = self._drawn(results)
        ctx = self._context(request)
        sel = select_messages(samples, ctx, self.scorer, self.on_error, drawn=drawn)
        return self._result(responses, sel)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> Any:
        """Async twin of :meth:`wrap_model_call` (concurrent ``handler`` calls)."""
        if self.n == 1:
            return await handler(request)
        sem = asyncio.Semaphore(max(1, min(self.n, self.max_concurrency or self.n)))

        async def one() -> Any:
            async with sem:
                return await handler(request)

        with _candidate_scope(self.hide_candidates):
            tasks = [asyncio.ensure_future(one()) for _ in range(self.n)]
        results = list(await asyncio.gather(*tasks, return_exceptions=True))
        responses, samples, drawn = self._drawn(results)
        ctx = self._context(request)
        sel = await aselect_messages(samples, ctx, self.scorer, self.on_error, drawn=drawn)
        return self._result(responses, sel)


__all__ = ["QValueMiddleware", "QValueState"]
