"""``create_q_agent``: a prebuilt ReAct agent whose model node is the Q-value selection node.

It takes the arguments of LangGraph's ``create_react_agent`` (and those of LangChain's
``create_agent`` it can honour) plus the selection's; docs/langgraph.md has the parity table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, NotRequired

from agentq.integrations.langgraph.env_tools import EnvTools
from agentq.integrations.langgraph.node import (
    PromptLike,
    QValueSelectionNode,
    check_prompt,
    get_state_value,
    state_messages,
)
from agentq.integrations.langgraph.sampling import Sampling, unwrap
from agentq.integrations.langgraph.selection import SELECTION_KEY
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, SystemMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.managed import RemainingSteps
from typing_extensions import TypedDict  # pydantic wants it on Python < 3.12

from agentq.protocols import Scorer
from agentq.search.selection import OnError


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
    if spec.startswith(("openai:http://", "openai:https://")):
        from agentq.integrations.openai_proposer import parse_openai_spec, resolve_api_key

        url, served = parse_openai_spec(spec[len("openai:") :])
        if not served:
            raise ValueError(f"name the served model in {spec!r}: openai:URL#model")
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as e:  # pragma: no cover - dev extra installs it
            raise ImportError(
                "an openai:URL#model string needs langchain-openai (pip install langchain-openai)"
            ) from e
        key = resolve_api_key() or "EMPTY"
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
    chat, _ = unwrap(model)
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
    scorer: Scorer,
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
            msgs = state_messages(state, "messages")
            if structured_prompt is not None:
                msgs = [structured_prompt, *msgs]
            return {"structured_response": structured.invoke(msgs, config)}

        async def agenerate_structured_response(
            state: Any, config: RunnableConfig
        ) -> dict[str, Any]:
            msgs = state_messages(state, "messages")
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
        msgs = get_state_value(state, "messages") or []
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
            msgs = list(get_state_value(state, "messages") or [])
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
                msgs = list(get_state_value(state, "messages") or [])
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


__all__ = [
    "QAgentState",
    "QAgentStateWithStructuredResponse",
    "create_q_agent",
]
