"""The drop-in promise where LangGraph apps run: streaming, hidden candidates, interrupts in
parallel tool calls and in scorers, non-finite scores, models that ignore ``n``, and the
arguments of ``create_react_agent``."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from agentq.integrations.langgraph import (
    CANDIDATES_TASK,
    MORE_STEPS_TEXT,
    create_q_agent,
    create_selection_node,
    select_sync,
    selection_of,
)
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt
from pydantic import BaseModel, PrivateAttr
from test_langgraph import (
    CANDIDATES,
    EXECUTED,
    PreferenceScorer,
    ScriptedChatModel,
    ScriptedNChatModel,
    call,
    get_weather,
    react_graph,
    scripted,
)

from agentq.errors import ScorerError

Q = {"messages": [HumanMessage("Weather?")]}


@pytest.fixture(autouse=True)
def _clear_executed():
    EXECUTED.clear()
    yield


def n_model(**kw: Any) -> ScriptedNChatModel:
    return ScriptedNChatModel(tool_turn=list(CANDIDATES), requests=[], **kw)


class IgnoresN(ScriptedNChatModel):
    """Has an ``n`` setting but answers every call with one sample (transformers serve does)."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.requests.append(int(kwargs.get("n", self.n)))
        return ChatResult(generations=[ChatGeneration(message=self._next(messages, kwargs))])


class Recorder(BaseCallbackHandler):
    """Records every chat-model start and every chain run it sees."""

    def __init__(self) -> None:
        self.chat_starts: list[list[str]] = []
        self.chain_names: list[str] = []

    def on_chat_model_start(self, serialized, messages, *, tags=None, **kwargs):
        self.chat_starts.append(list(tags or []))

    def on_chain_start(self, serialized, inputs, *, name=None, **kwargs):
        self.chain_names.append(str(name or kwargs.get("run_name") or ""))


# ------------------------------------------------------------------------------------------
# Streaming keeps selection on (an n-capable model used to draw ONE sample when streamed)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["messages", "updates", "values", "debug", "custom", "tasks"])
def test_every_stream_mode_keeps_selection_sync(mode):
    model = n_model()
    agent = create_q_agent(model, [get_weather], PreferenceScorer(["London"]), n=5)
    list(agent.stream(Q, stream_mode=mode))
    assert EXECUTED == ["London"]
    assert model.requests == [5, 5]  # one n=5 call per step, never a streamed single sample


async def test_astream_messages_and_astream_events_keep_selection():
    model = n_model()
    agent = create_q_agent(model, [get_weather], PreferenceScorer(["Rome"]), n=5)
    chunks = [c async for c in agent.astream(Q, stream_mode=["messages", "updates"])]
    assert EXECUTED == ["Rome"] and model.requests == [5, 5]
    winners = [
        c[1]["agent"]["messages"][0] for c in chunks if c[0] == "updates" and "agent" in c[1]
    ]
    assert selection_of(winners[0])["n"] == 5 and selection_of(winners[0])["sampling"] == "n"
    EXECUTED.clear()
    model.requests.clear()
    events = [e async for e in agent.astream_events(Q, version="v2")]
    assert EXECUTED == ["Rome"] and model.requests == [5, 5]
    starts = [e for e in events if e["event"] == "on_chat_model_start"]
    assert starts and all("agentq:candidate" in e["tags"] for e in starts)


def test_sync_stream_events_of_a_streaming_handler_keep_selection():
    # a config callback handler that is a streaming handler (what astream_events attaches)
    from langchain_core.tracers._streaming import _StreamingCallbackHandler

    class StreamingRecorder(Recorder, _StreamingCallbackHandler):
        def tap_output_iter(self, run_id, output):
            return output

    model = n_model()
    agent = create_q_agent(model, [get_weather], PreferenceScorer(["London"]), n=5)
    out = agent.invoke(Q, {"callbacks": [StreamingRecorder()]})
    assert EXECUTED == ["London"] and out["agentq_selection"]["sampling"] == "n"


def test_local_chat_model_streamed_with_n_keeps_selection():
    pytest.importorskip("torch")
    from agentq.integrations.chat_model import LocalChatModel

    from agentq.models.tiny import make_tiny_model, make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    chat = LocalChatModel.from_pretrained_objects(
        make_tiny_model(tok, seed=0, hidden_size=32, intermediate_size=64),
        tok,
        temperature=1.5,
        max_new_tokens=6,
        seed=0,
        max_input_tokens=64,
    )
    scorer = PreferenceScorer([])
    agent = create_q_agent(chat, [], scorer, n=3)
    chunks = list(agent.stream({"messages": [HumanMessage("hi")]}, stream_mode="messages"))
    final = [m for m, meta in chunks if meta.get("langgraph_node") == "agent"]
    sel = selection_of(final[-1])
    assert sel["n"] == 3 and sel["sampling"] == "n"
    assert sum(c["count"] for c in sel["candidates"]) == 3


# ------------------------------------------------------------------------------------------
# A model or server that returns fewer samples than n
# ------------------------------------------------------------------------------------------


def test_fewer_samples_than_n_fall_back_to_concurrent_calls_and_say_so():
    model = IgnoresN(tool_turn=list(CANDIDATES), requests=[])
    node = create_selection_node(model.bind_tools([get_weather]), PreferenceScorer(["London"]), 5)
    out = react_graph(node).invoke(Q)
    assert EXECUTED == ["London"]
    sel = selection_of(out["messages"][1])
    assert sel["n"] == 5 and sel["sampling"] == "n+concurrent"
    assert "returned 1 of 5" in sel["warning"] and sel["scores"] is not None
    # the first call asked for 5; the 4 others asked for one each; the next step goes
    # straight to concurrent calls of one sample
    assert model.requests[:5] == [5, 1, 1, 1, 1] and model.requests[5:] == [1] * 5
    answer = selection_of(out["messages"][-1])
    assert answer["sampling"] == "concurrent" and "ignores n" in answer["warning"]


async def test_fewer_samples_than_n_async():
    model = IgnoresN(tool_turn=list(CANDIDATES), requests=[])
    agent = create_q_agent(model, [get_weather], PreferenceScorer(["Rome"]), n=5)
    out = await agent.ainvoke(Q)
    assert EXECUTED == ["Rome"]
    assert selection_of(out["messages"][1])["sampling"] == "n+concurrent"


# ------------------------------------------------------------------------------------------
# hide_candidates hides the candidate runs (node and create_q_agent)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_factory", [scripted, n_model])
def test_hide_candidates_hides_runs_from_config_callbacks(model_factory):
    rec = Recorder()
    agent = create_q_agent(
        model_factory(), [get_weather], PreferenceScorer(["London"]), n=5, hide_candidates=True
    )
    out = agent.invoke(Q, {"callbacks": [rec]})
    assert EXECUTED == ["London"] and out["agentq_selection"]["n"] == 5
    assert rec.chat_starts == []
    assert "agent" in rec.chain_names  # the node itself is still traced
    # without hide_candidates the same handler sees the tagged candidate runs
    EXECUTED.clear()
    rec2 = Recorder()
    create_q_agent(model_factory(), [get_weather], PreferenceScorer(["London"]), n=5).invoke(
        Q, {"callbacks": [rec2]}
    )
    assert rec2.chat_starts and all("agentq:candidate" in t for t in rec2.chat_starts)


async def test_hide_candidates_hides_runs_from_astream_events_node_and_agent():
    node = create_selection_node(
        scripted().bind_tools([get_weather]), PreferenceScorer(["Rome"]), 5, hide_candidates=True
    )
    events = [e async for e in react_graph(node).astream_events(Q, version="v2")]
    assert EXECUTED == ["Rome"]
    assert not [e for e in events if e["event"].startswith("on_chat_model")]
    EXECUTED.clear()
    agent = create_q_agent(
        n_model(),
        [get_weather],
        PreferenceScorer(["Rome"]),
        n=5,
        hide_candidates=True,
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "h"}}
    events = [e async for e in agent.astream_events(Q, cfg, version="v2")]
    assert EXECUTED == ["Rome"]
    assert not [e for e in events if e["event"].startswith("on_chat_model")]
    assert not [e for e in events if e.get("name") == CANDIDATES_TASK]


# ------------------------------------------------------------------------------------------
# Interrupts: in one of two parallel tool calls, and in the scorer
# ------------------------------------------------------------------------------------------

RUNS: list[str] = []


@tool
def lookup(city: str) -> str:
    """Look a city up."""
    RUNS.append(f"lookup:{city}")
    return f"{city} found."


@tool
def book(city: str) -> str:
    """Book a trip (asks a human first)."""
    answer = interrupt({"book": city})
    RUNS.append(f"book:{city}:{answer}")
    return f"booked {city}"


TWO_CALLS = [
    ("", [call("lookup", city="Oslo"), call("book", city="Oslo")]),
    ("", [call("lookup", city="Bergen")]),
]


@pytest.mark.parametrize("as_tool_node", [False, True])
def test_sibling_tool_call_runs_once_when_the_other_interrupts(as_tool_node):
    RUNS.clear()
    model = ScriptedChatModel(tool_turn=list(TWO_CALLS))
    tools: Any = ToolNode([lookup, book]) if as_tool_node else [lookup, book]
    agent = create_q_agent(
        model, tools, PreferenceScorer(["book"]), n=2, checkpointer=InMemorySaver()
    )
    cfg = {"configurable": {"thread_id": "p"}}
    out = agent.invoke({"messages": [HumanMessage("Trip?")]}, cfg)
    assert out["__interrupt__"][0].value == {"book": "Oslo"}
    assert RUNS == ["lookup:Oslo"]
    out = agent.invoke(Command(resume="ok"), cfg)
    assert RUNS == ["lookup:Oslo", "book:Oslo:ok"]  # lookup did not run again
    assert sorted(m.content for m in out["messages"] if isinstance(m, ToolMessage)) == [
        "Oslo found.",
        "booked Oslo",
    ]


@pytest.mark.parametrize("with_hook", [False, True])
async def test_sibling_tool_call_runs_once_when_the_other_interrupts_async(with_hook):
    RUNS.clear()
    model = ScriptedChatModel(tool_turn=list(TWO_CALLS))
    hook = {"post_model_hook": lambda state: {}} if with_hook else {}
    agent = create_q_agent(
        model, [lookup, book], PreferenceScorer(["book"]), n=2, checkpointer=InMemorySaver(),
        **hook,
    )  # fmt: skip
    cfg: Any = {"configurable": {"thread_id": f"pa-{with_hook}"}}
    out = await agent.ainvoke({"messages": [HumanMessage("Trip?")]}, cfg)
    assert out["__interrupt__"][0].value == {"book": "Oslo"} and RUNS == ["lookup:Oslo"]
    await agent.ainvoke(Command(resume="ok"), cfg)
    assert RUNS == ["lookup:Oslo", "book:Oslo:ok"]


class ApprovingScorer(PreferenceScorer):
    """A human approves the candidate list (interrupt), then the preference decides."""

    def __init__(self, preferred):
        super().__init__(preferred)
        self.asked: list[list[str]] = []

    def score(self, context, actions):
        self.asked.append(list(actions))
        approved = interrupt({"candidates": list(actions)})
        assert approved == list(actions), "resumed on other candidates than the human saw"
        return super().score(context, actions)


def test_interrupting_scorer_resumes_on_the_candidates_the_human_approved():
    model = scripted()
    scorer = ApprovingScorer(["London"])
    agent = create_q_agent(model, [get_weather], scorer, n=5, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "s"}}
    out = agent.invoke(Q, cfg)
    shown = out["__interrupt__"][0].value["candidates"]
    assert model.calls == 5 and len(shown) == 4
    out = agent.invoke(Command(resume=shown), cfg)
    assert model.calls == 5 + 5  # the first step's 5 samples reused; 5 for the answer turn
    assert scorer.asked[0] == scorer.asked[1] == shown
    assert EXECUTED == ["London"] and "__interrupt__" not in out
    sel = selection_of(out["messages"][1])
    assert [c["text"] for c in sel["candidates"]] == shown


async def test_interrupting_scorer_resumes_on_the_same_candidates_async():
    model = n_model()

    class AsyncApprover(ApprovingScorer):
        async def ascore(self, context, actions):
            return self.score(context, actions)

    scorer = AsyncApprover(["Rome"])
    agent = create_q_agent(model, [get_weather], scorer, n=5, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "sa"}}
    out = await agent.ainvoke(Q, cfg)
    shown = out["__interrupt__"][0].value["candidates"]
    out = await agent.ainvoke(Command(resume=shown), cfg)
    assert model.requests == [5, 5] and EXECUTED == ["Rome"]


# ------------------------------------------------------------------------------------------
# Non-finite scores
# ------------------------------------------------------------------------------------------


class ConstScorer:
    spec = "const"

    def __init__(self, values):
        self.values = values

    def score(self, context, actions):
        return [self.values[i % len(self.values)] for i in range(len(actions))]


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_scores_are_scorer_failures(bad):
    samples = [AIMessage("a"), AIMessage("b")]
    with pytest.raises(ScorerError, match="non-finite"):
        select_sync(samples, [], ConstScorer([1.0, bad]))
    i, meta = select_sync(samples, [], ConstScorer([1.0, bad]), on_error="fallback")
    assert i == 0 and meta["scores"] is None and "non-finite" in meta["warning"]
    json.dumps(meta, allow_nan=False)  # plain JSON


# ------------------------------------------------------------------------------------------
# create_react_agent's arguments
# ------------------------------------------------------------------------------------------


@tool
def flaky(city: str) -> str:
    """Always fails."""
    raise ValueError("no such city")


def test_tools_as_tool_node_keep_handle_tool_errors():
    model = ScriptedChatModel(tool_turn=[("", [call("flaky", city="X")])])
    node = ToolNode([flaky], handle_tool_errors="tool failed, try again")
    agent = create_q_agent(model, node, PreferenceScorer([]), n=2)
    out = agent.invoke(Q)
    tm = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert tm[0].content == "tool failed, try again"
    with pytest.raises(ValueError):  # the default ToolNode re-raises
        create_q_agent(
            ScriptedChatModel(tool_turn=[("", [call("flaky", city="X")])]),
            ToolNode([flaky], handle_tool_errors=False),
            PreferenceScorer([]),
            n=2,
        ).invoke(Q)


class InputRecorder(ScriptedChatModel):
    """Remembers the messages each sample was drawn on."""

    _seen: list[list[Any]] = PrivateAttr(default_factory=list)

    def _next(self, messages, kwargs):
        self._seen.append(list(messages))
        return super()._next(messages, kwargs)


@pytest.mark.parametrize(
    "prompt",
    [
        "Be brief.",
        SystemMessage("Be brief."),
        lambda state: [SystemMessage("Be brief."), *state["messages"]],
        RunnableLambda(lambda state: [SystemMessage("Be brief."), *state["messages"]]),
        ChatPromptTemplate.from_messages([("system", "Be brief."), ("placeholder", "{messages}")]),
    ],
    ids=["str", "system", "callable", "runnable", "template"],
)
def test_prompt_kinds(prompt):
    model = InputRecorder(tool_turn=list(CANDIDATES))
    scorer = PreferenceScorer(["London"])
    out = create_q_agent(model, [get_weather], scorer, n=5, prompt=prompt).invoke(Q)
    assert EXECUTED == ["London"]
    first = model._seen[0]
    assert isinstance(first[0], SystemMessage) and first[0].content == "Be brief."
    assert scorer.calls[0][0][0] == {"role": "system", "content": "Be brief."}
    assert not any(isinstance(m, SystemMessage) for m in out["messages"])


def test_bad_prompt_is_an_error_at_construction():
    with pytest.raises(TypeError, match="prompt must be"):
        create_q_agent(scripted(), [get_weather], PreferenceScorer([]), prompt=42)


def test_provider_model_string_uses_init_chat_model(monkeypatch):
    import langchain.chat_models as lcm

    seen = []

    def fake_init(spec, **kw):
        seen.append(spec)
        return scripted()

    monkeypatch.setattr(lcm, "init_chat_model", fake_init)
    agent = create_q_agent("fakeprovider:some-model", [get_weather], PreferenceScorer(["Rome"]))
    agent.invoke(Q)
    assert seen == ["fakeprovider:some-model"] and EXECUTED == ["Rome"]


def test_openai_url_model_string_builds_chat_openai():
    pytest.importorskip("langchain_openai")
    from agentq.integrations.langgraph import _resolve_model
    from langchain_openai import ChatOpenAI

    m = _resolve_model("openai:http://127.0.0.1:9/v1#served")
    assert isinstance(m, ChatOpenAI) and m.model_name == "served"
    assert str(m.openai_api_base).startswith("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="name the served model"):
        _resolve_model("openai:http://127.0.0.1:9/v1")


class Weather(BaseModel):
    """A structured answer."""

    city: str
    sunny: bool


class StructuredScripted(ScriptedChatModel):
    def with_structured_output(self, schema, **kwargs):
        return RunnableLambda(lambda msgs: schema(city="London", sunny=True))


def test_response_format_fills_structured_response():
    model = StructuredScripted(tool_turn=list(CANDIDATES))
    agent = create_q_agent(
        model, [get_weather], PreferenceScorer(["London"]), n=5, response_format=Weather
    )
    out = agent.invoke(Q)
    assert out["structured_response"] == Weather(city="London", sunny=True)
    assert "generate_structured_response" in agent.get_graph().nodes
    # with a (prompt, schema) tuple
    out = create_q_agent(
        StructuredScripted(tool_turn=list(CANDIDATES)),
        [get_weather],
        PreferenceScorer(["London"]),
        response_format=("Answer as JSON.", Weather),
    ).invoke(Q)
    assert out["structured_response"].city == "London"


def test_response_format_without_structured_output_fails_at_construction():
    class NoStructured(ScriptedChatModel):
        def with_structured_output(self, schema, **kwargs):
            raise NotImplementedError("nope")

    with pytest.raises(ValueError, match="no structured output"):
        create_q_agent(
            NoStructured(tool_turn=list(CANDIDATES)),
            [get_weather],
            PreferenceScorer([]),
            response_format=Weather,
        )
    with pytest.raises(ValueError, match="response_format needs a chat model"):
        create_q_agent(
            RunnableLambda(lambda m: AIMessage("x")),
            [],
            PreferenceScorer([]),
            response_format=Weather,
        )


def test_pre_and_post_model_hooks():
    model = InputRecorder(tool_turn=list(CANDIDATES))
    seen_post: list[str] = []

    def pre(state):
        return {"llm_input_messages": [SystemMessage("trimmed"), state["messages"][-1]]}

    def post(state):
        seen_post.append(state["messages"][-1].type)
        return {}

    agent = create_q_agent(
        model,
        [get_weather],
        PreferenceScorer(["London"]),
        n=5,
        pre_model_hook=pre,
        post_model_hook=post,
    )
    out = agent.invoke(Q)
    assert EXECUTED == ["London"]
    assert model._seen[0][0].content == "trimmed"
    assert seen_post == ["ai", "ai"]
    assert not any(m.content == "trimmed" for m in out["messages"])  # not stored
    assert {"pre_model_hook", "post_model_hook"} <= set(agent.get_graph().nodes)


def test_context_schema_and_name():
    from dataclasses import dataclass

    from langgraph.runtime import Runtime

    @dataclass
    class Ctx:
        user: str

    seen: list[str] = []

    def pre(state, runtime: Runtime[Ctx]):
        seen.append(runtime.context.user)
        return {}

    agent = create_q_agent(
        scripted(),
        [get_weather],
        PreferenceScorer(["London"]),
        n=5,
        context_schema=Ctx,
        pre_model_hook=pre,
        name="weather_agent",
    )
    out = agent.invoke(Q, context=Ctx(user="ada"))
    assert seen == ["ada", "ada"] and agent.name == "weather_agent"
    assert out["messages"][1].name == "weather_agent"


def test_remaining_steps_stops_a_tool_call_without_steps_left():
    model = ScriptedChatModel(tool_turn=[("", [call("get_weather", city="Paris")])])
    agent = create_q_agent(model, [get_weather], PreferenceScorer([]), n=2)
    out = agent.invoke(Q, {"recursion_limit": 2})
    assert out["messages"][-1].content == MORE_STEPS_TEXT and EXECUTED == []


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="version"):
        create_q_agent(scripted(), [get_weather], PreferenceScorer([]), version="v3")
    with pytest.raises(TypeError, match="not supported"):
        create_q_agent(lambda state, runtime: scripted(), [get_weather], PreferenceScorer([]))
    from typing_extensions import TypedDict

    class Bare(TypedDict):
        x: int

    with pytest.raises(ValueError, match="lacks"):
        create_q_agent(scripted(), [get_weather], PreferenceScorer([]), state_schema=Bare)
    with pytest.raises(ValueError, match="bound to tools without"):
        create_q_agent(
            scripted().bind_tools([get_weather]), [get_weather, lookup], PreferenceScorer([])
        )


def test_v1_runs_all_calls_in_one_tools_task():
    model = ScriptedChatModel(
        tool_turn=[("", [call("lookup", city="A"), call("lookup", city="B")])]
    )
    RUNS.clear()
    agent = create_q_agent(model, [lookup], PreferenceScorer([]), n=2, version="v1")
    agent.invoke(Q)
    assert sorted(RUNS) == ["lookup:A", "lookup:B"]


def test_create_agent_arguments_system_prompt_cache_and_unsupported_ones():
    from langchain.agents.middleware import AgentMiddleware
    from langchain.agents.structured_output import ToolStrategy
    from langgraph.cache.memory import InMemoryCache

    model = InputRecorder(tool_turn=list(CANDIDATES))
    agent = create_q_agent(
        model, [get_weather], PreferenceScorer(["Rome"]), system_prompt="Be brief.",
        cache=InMemoryCache(),
    )  # fmt: skip
    assert agent.cache is not None  # passed to compile, as create_agent does
    agent.invoke(Q)
    assert model._seen[0][0] == SystemMessage("Be brief.") and EXECUTED == ["Rome"]
    scorer = PreferenceScorer([])
    with pytest.raises(ValueError, match="not both"):
        create_q_agent(scripted(), [get_weather], scorer, prompt="a", system_prompt="b")
    with pytest.raises(TypeError, match="QValueMiddleware"):
        create_q_agent(scripted(), [get_weather], scorer, middleware=[AgentMiddleware()])
    with pytest.raises(TypeError, match="ToolStrategy"):
        create_q_agent(scripted(), [get_weather], scorer, response_format=ToolStrategy(Weather))
    with pytest.raises(TypeError, match="config_schema .*context_schema"):
        create_q_agent(scripted(), [get_weather], scorer, config_schema=dict)
    with pytest.raises(TypeError, match="does not support bogus"):
        create_q_agent(scripted(), [get_weather], scorer, bogus=1)
