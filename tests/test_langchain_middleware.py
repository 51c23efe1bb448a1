"""QValueMiddleware on langchain.agents.create_agent: selection, streaming, interrupts, policies."""

from __future__ import annotations

from typing import Any

import pytest
from agentq.integrations.langchain import QValueMiddleware
from agentq.integrations.langgraph import SELECTION_KEY, selection_of
from langchain.agents import create_agent
from langchain.agents.middleware import wrap_model_call
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, interrupt
from test_langgraph import CANDIDATES, EXECUTED, PreferenceScorer, ScriptedChatModel, get_weather

from agentq.errors import ScorerError


@pytest.fixture(autouse=True)
def _clear_executed():
    EXECUTED.clear()
    yield


def scripted() -> ScriptedChatModel:
    return ScriptedChatModel(tool_turn=list(CANDIDATES))


def test_middleware_executes_exactly_the_preferred_tool_call_sync():
    model = scripted()
    scorer = PreferenceScorer(["London", "Paris"])
    agent = create_agent(
        model, [get_weather], middleware=[QValueMiddleware(scorer, n=5)], system_prompt="Be brief."
    )
    out = agent.invoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["London"]
    ai = out["messages"][1]
    sel = selection_of(ai)
    assert sel["n"] == 5 and len(sel["candidates"]) == 4
    assert "London" in sel["candidates"][sel["index"]]["text"]
    assert out[SELECTION_KEY]["n"] == 5  # the state key (latest selection: the answer turn)
    ctx, actions = scorer.calls[0]
    assert ctx[0] == {"role": "system", "content": "Be brief."} and len(actions) == 4
    assert model.calls == 10 and all(t == ["get_weather"] for t in model.bound_tools)
    assert out["messages"][-1].content == "All done."


async def test_middleware_executes_exactly_the_preferred_tool_call_async():
    model = scripted()
    agent = create_agent(
        model, [get_weather], middleware=[QValueMiddleware(PreferenceScorer(["Rome"]), n=5)]
    )
    out = await agent.ainvoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["Rome"]
    assert (
        "Rome"
        in selection_of(out["messages"][1])["candidates"][
            selection_of(out["messages"][1])["index"]
        ]["text"]
    )


def test_inner_middleware_request_changes_reach_every_sample():
    @wrap_model_call
    def force_tools(request, handler):
        return handler(request.override(tool_choice="any"))

    model = scripted()
    agent = create_agent(
        model,
        [get_weather],
        middleware=[QValueMiddleware(PreferenceScorer(["London"]), n=3), force_tools],
    )
    agent.invoke({"messages": [HumanMessage("Weather?")]})
    assert [e["tool_choice"] for e in model._log][:3] == ["any", "any", "any"]


def test_middleware_n1_pass_through_and_streams_tokens():
    model = scripted()
    scorer = PreferenceScorer(["London"])
    agent = create_agent(model, [get_weather], middleware=[QValueMiddleware(scorer, n=1)])
    chunks = list(agent.stream({"messages": [HumanMessage("Weather?")]}, stream_mode="messages"))
    assert EXECUTED == ["Paris"] and scorer.calls == [] and model.calls == 2
    assert any(isinstance(m, AIMessageChunk) for m, _ in chunks)


def _model_stream(chunks: list[Any]) -> list[Any]:
    return [m for m, meta in chunks if meta.get("langgraph_node") == "model"]


def test_middleware_messages_stream_has_the_winner_only():
    agent = create_agent(
        scripted(), [get_weather], middleware=[QValueMiddleware(PreferenceScorer(["London"]), n=5)]
    )
    chunks = list(agent.stream({"messages": [HumanMessage("Weather?")]}, stream_mode="messages"))
    ai = _model_stream(chunks)
    calls = [tc["args"] for m in ai for tc in getattr(m, "tool_calls", [])]
    text = "".join(str(m.content) for m in ai)
    assert calls == [{"city": "London"}]
    assert "rains" not in text and "Let me check" not in text
    assert "All done." in text


async def test_middleware_messages_stream_has_the_winner_only_async():
    agent = create_agent(
        scripted(), [get_weather], middleware=[QValueMiddleware(PreferenceScorer(["Rome"]), n=5)]
    )
    chunks = [
        c
        async for c in agent.astream(
            {"messages": [HumanMessage("Weather?")]}, stream_mode="messages"
        )
    ]
    calls = [tc["args"] for m in _model_stream(chunks) for tc in getattr(m, "tool_calls", [])]
    assert calls == [{"city": "Rome"}]


def test_middleware_scorer_failure_policies():
    failing = PreferenceScorer([], fail=RuntimeError("down"))
    agent = create_agent(scripted(), [get_weather], middleware=[QValueMiddleware(failing, n=5)])
    with pytest.raises(ScorerError, match="down"):
        agent.invoke({"messages": [HumanMessage("Weather?")]})
    agent = create_agent(
        scripted(), [get_weather], middleware=[QValueMiddleware(failing, n=5, on_error="fallback")]
    )
    out = agent.invoke({"messages": [HumanMessage("Weather?")]})
    assert EXECUTED == ["Paris"]
    sel = selection_of(out["messages"][1])
    assert sel["scores"] is None and "down" in sel["warning"]


@tool
def guarded_weather(city: str) -> str:
    """The weather in a city, after a human approves."""
    if interrupt({"city": city}) != "yes":
        return "denied"
    EXECUTED.append(city)
    return f"Sunny in {city}."


@pytest.mark.parametrize("use_async", [False, True])
async def test_middleware_interrupt_resume_does_not_resample(use_async):
    model = ScriptedChatModel(
        tool_turn=[
            (c, [{**tc, "name": "guarded_weather"} for tc in calls]) for c, calls in CANDIDATES
        ]
    )
    scorer = PreferenceScorer(["London"])
    agent = create_agent(
        model,
        [guarded_weather],
        middleware=[QValueMiddleware(scorer, n=5)],
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "t1"}}
    run = agent.ainvoke if use_async else None

    async def invoke(x: Any) -> Any:
        return await run(x, cfg) if run else agent.invoke(x, cfg)

    out = await invoke({"messages": [HumanMessage("Weather?")]})
    assert out["__interrupt__"][0].value == {"city": "London"}
    assert model.calls == 5 and len(scorer.calls) == 1
    out = await invoke(Command(resume="yes"))
    assert EXECUTED == ["London"]
    assert model.calls == 10 and len(scorer.calls) == 1
    assert out["messages"][-1].content == "All done."


def test_middleware_structured_output_comes_from_the_winner():
    from langchain.agents.structured_output import ToolStrategy
    from pydantic import BaseModel

    class Weather(BaseModel):
        """A weather report."""

        city: str

    model = ScriptedChatModel(
        tool_turn=[
            ("", [{"name": "Weather", "args": {"city": c}}]) for c in ("Paris", "London", "Rome")
        ]
    )
    agent = create_agent(
        model,
        [get_weather],
        response_format=ToolStrategy(Weather),
        middleware=[QValueMiddleware(PreferenceScorer(["London"]), n=3)],
    )
    out = agent.invoke({"messages": [HumanMessage("Weather?")]})
    assert out["structured_response"] == Weather(city="London")
    assert all(set(t) == {"get_weather", "Weather"} for t in model.bound_tools)


async def test_middleware_lets_graph_bubble_up_through():
    from langchain.agents.middleware import ModelRequest
    from langgraph.errors import GraphInterrupt

    mw = QValueMiddleware(PreferenceScorer([]), n=3, on_error="fallback")
    request = ModelRequest(model=scripted(), messages=[HumanMessage("x")])

    def handler(req):
        raise GraphInterrupt(())

    async def ahandler(req):
        raise GraphInterrupt(())

    with pytest.raises(GraphInterrupt):
        mw.wrap_model_call(request, handler)
    with pytest.raises(GraphInterrupt):
        await mw.awrap_model_call(request, ahandler)
