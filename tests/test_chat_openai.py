"""LangChain's ``ChatOpenAI`` inside ``create_q_agent`` against a stand-in OpenAI-compatible
server on 127.0.0.1 that behaves as vLLM does: ``n`` choices per request, and with
``"stream": true`` chunks of several choices interleaved, each chunk carrying its choice's
``index``. langchain-openai reads only ``choices[0]`` of a stream chunk, so a streamed ``n``
request would merge or lose samples: agentq must never stream its ``n`` call, whatever the
stream mode (``stream_mode="messages"``, ``astream_events``) or ``ChatOpenAI(streaming=True)``.
A second switch makes the stand-in ignore ``n`` (transformers serve does): agentq must fall
back to concurrent samples and say so in the selection metadata.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from agentq.integrations.langgraph import create_q_agent, selection_of
from agentq.integrations.server import BackgroundServer
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

langchain_openai = pytest.importorskip("langchain_openai")

CITIES = ["Paris", "London", "Rome", "Oslo", "Lima"]
EXECUTED: list[str] = []


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    EXECUTED.append(city)
    return f"Sunny in {city}."


class Scorer:
    """Prefers Rome (the third choice of an ``n`` request), then the others in CITIES order."""

    spec = "prefer-rome"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def _one(self, action: str) -> float:
        if "Rome" in action:
            return 10.0
        return float(-next((i for i, c in enumerate(CITIES) if c in action), 99))

    def score(self, context: Any, actions: list[str]) -> list[float]:
        self.calls.append(list(actions))
        return [self._one(a) for a in actions]

    async def ascore(self, context: Any, actions: list[str]) -> list[float]:
        return self.score(context, actions)


class StandIn:
    """Behaviour switches and the request log of the stand-in."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.support_n = True
        self.log: list[dict[str, Any]] = []
        self.counter = itertools.count()


def _message(st: StandIn, body: dict[str, Any], i: int) -> dict[str, Any]:
    if body["messages"][-1]["role"] == "tool":
        return {"role": "assistant", "content": "It is sunny."}
    k = i if st.support_n else next(st.counter)  # one choice per request: vary by request
    city = CITIES[k % len(CITIES)]
    call = {
        "id": f"call_{k}",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
    }
    return {"role": "assistant", "content": "", "tool_calls": [call]}


def _stream(body: dict[str, Any], msgs: list[dict[str, Any]]) -> StreamingResponse:
    """vLLM's streaming shape: one choice per chunk, choices interleaved, each with its index."""

    def events() -> Any:
        base = {"id": "s", "object": "chat.completion.chunk", "model": body["model"]}
        chunks: list[list[dict[str, Any]]] = []
        for i, m in enumerate(msgs):
            parts: list[dict[str, Any]] = [{"index": i, "delta": {"role": "assistant"}}]
            if m.get("content"):
                for word in m["content"].split(" "):
                    parts.append({"index": i, "delta": {"content": word + " "}})
            for j, tc in enumerate(m.get("tool_calls") or []):
                parts.append({"index": i, "delta": {"tool_calls": [{"index": j, **tc}]}})
            fin = "tool_calls" if m.get("tool_calls") else "stop"
            parts.append({"index": i, "delta": {}, "finish_reason": fin})
            chunks.append(parts)
        for step in itertools.zip_longest(*chunks):
            for part in step:
                if part is not None:
                    yield f"data: {json.dumps({**base, 'choices': [part]})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _make_app(st: StandIn) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        st.log.append(body)
        n = int(body.get("n") or 1) if st.support_n else 1
        msgs = [_message(st, body, i) for i in range(n)]
        if body.get("stream"):
            return _stream(body, msgs)
        choices = [
            {
                "index": i,
                "message": m,
                "finish_reason": "tool_calls" if "tool_calls" in m else "stop",
            }
            for i, m in enumerate(msgs)
        ]
        usage = {"prompt_tokens": 10, "completion_tokens": 7 * n, "total_tokens": 10 + 7 * n}
        return {
            "id": "c",
            "object": "chat.completion",
            "model": body["model"],
            "choices": choices,
            "usage": usage,
        }

    return app


@pytest.fixture(scope="module")
def server() -> Any:
    st = StandIn()
    with BackgroundServer(_make_app(st), log_level="critical") as srv:
        st.url = srv.url + "/v1"  # type: ignore[attr-defined]
        yield st


@pytest.fixture
def st(server: StandIn) -> StandIn:
    server.reset()
    EXECUTED.clear()
    return server


def chat(st: StandIn, **kw: Any) -> Any:
    import openai

    # a fresh async client per model: langchain-openai's shared default one keeps
    # connections of an event loop that pytest-asyncio closes after each test
    return langchain_openai.ChatOpenAI(
        base_url=st.url,
        api_key="EMPTY",
        model="policy",
        max_retries=0,
        http_async_client=openai.DefaultAsyncHttpxClient(),
        **kw,
    )


def agent(st: StandIn, scorer: Scorer, **kw: Any) -> Any:
    return create_q_agent(chat(st, **kw), [get_weather], scorer, n=3)


Q = {"messages": [HumanMessage("Weather?")]}


def _check(st: StandIn, scorer: Scorer, winner: AIMessage) -> None:
    meta = selection_of(winner)
    assert meta is not None and meta["n"] == 3 and meta["sampling"] == "n", meta
    # ChatOpenAI copies the response's usage (21 tokens for 3 choices) onto each choice:
    # the step's count is the response's, not 3 x 21
    assert meta["tokens"] == 21
    assert [c["text"].count("get_weather") for c in meta["candidates"]] == [1, 1, 1]
    assert winner.tool_calls[0]["args"] == {"city": "Rome"}  # choices[2]: none was lost
    assert EXECUTED == ["Rome"]
    assert len(scorer.calls) == 1 and len(scorer.calls[0]) == 3
    first = st.log[0]
    assert first["n"] == 3 and not first.get("stream"), first  # the n call is never streamed


def test_the_stand_in_streams_several_choices_the_way_vllm_does(st: StandIn) -> None:
    import httpx

    body = {"model": "policy", "messages": [{"role": "user", "content": "x"}], "n": 3}
    with httpx.stream("POST", st.url + "/chat/completions", json={**body, "stream": True}) as r:
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: {")]
    indices = [json.loads(ln[6:])["choices"][0]["index"] for ln in lines]
    assert set(indices) == {0, 1, 2} and indices[:3] == [0, 1, 2]  # interleaved


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("mode", ["messages", "updates", "values"])
def test_chat_openai_n_in_every_stream_mode_sync(st: StandIn, mode: str, streaming: bool) -> None:
    scorer = Scorer()
    app = create_q_agent(
        chat(st, streaming=streaming), [get_weather], scorer, n=3, checkpointer=InMemorySaver()
    )
    cfg: Any = {"configurable": {"thread_id": "t"}}
    chunks = list(app.stream(Q, cfg, stream_mode=mode))
    assert chunks
    if mode == "messages":
        streamed = [m for m, _ in chunks if isinstance(m, AIMessage) and m.tool_calls]
        assert [m.tool_calls[0]["args"]["city"] for m in streamed] == ["Rome"]
    winner = next(m for m in app.get_state(cfg).values["messages"] if isinstance(m, AIMessage))
    _check(st, scorer, winner)


@pytest.mark.parametrize("streaming", [False, True])
async def test_chat_openai_n_astream_messages_and_astream_events(
    st: StandIn, streaming: bool
) -> None:
    scorer = Scorer()
    app = create_q_agent(
        chat(st, streaming=streaming), [get_weather], scorer, n=3, checkpointer=InMemorySaver()
    )
    cfg: Any = {"configurable": {"thread_id": f"t-{streaming}"}}
    got = [m async for m, _ in app.astream(Q, cfg, stream_mode="messages")]
    calls = [m for m in got if isinstance(m, AIMessage) and m.tool_calls]
    assert [m.tool_calls[0]["args"]["city"] for m in calls] == ["Rome"]
    state = await app.aget_state(cfg)
    winner = next(m for m in state.values["messages"] if isinstance(m, AIMessage))
    _check(st, scorer, winner)

    st.reset()
    EXECUTED.clear()
    scorer2 = Scorer()
    app2 = create_q_agent(chat(st, streaming=streaming), [get_weather], scorer2, n=3)
    events = [e async for e in app2.astream_events(Q, version="v2")]
    assert any(e["event"] == "on_chat_model_start" for e in events)
    out = next(e for e in reversed(events) if e["event"] == "on_chain_end" and not e["parent_ids"])
    winner2 = next(m for m in out["data"]["output"]["messages"] if isinstance(m, AIMessage))
    _check(st, scorer2, winner2)


def test_server_ignoring_n_falls_back_to_concurrent_samples_and_says_so(st: StandIn) -> None:
    st.support_n = False
    scorer = Scorer()
    app = agent(st, scorer)
    msgs = app.invoke(Q)["messages"]
    winner = next(m for m in msgs if isinstance(m, AIMessage) and m.tool_calls)
    meta = selection_of(winner)
    assert meta is not None and meta["n"] == 3 and meta["sampling"] == "n+concurrent"
    assert "returned 1 of 3 samples" in meta["warning"]
    assert meta["tokens"] == 7 * 3  # the n call's one choice and two concurrent calls
    assert len(scorer.calls) == 1 and len(scorer.calls[0]) == 3  # three distinct candidates
    assert [b.get("n") for b in st.log[:3]] == [3, 1, 1]
    assert all(not b.get("stream") for b in st.log)
    later = selection_of(msgs[-1])  # the next step goes straight to concurrent calls
    assert later is not None and later["sampling"] == "concurrent"
    assert "ignores n" in later["warning"] and all(b.get("n") != 3 for b in st.log[3:])


async def test_server_ignoring_n_falls_back_async(st: StandIn) -> None:
    st.support_n = False
    scorer = Scorer()
    app = agent(st, scorer, streaming=True)
    msgs = (await app.ainvoke(Q))["messages"]
    winner = next(m for m in msgs if isinstance(m, AIMessage) and m.tool_calls)
    meta = selection_of(winner)
    assert meta is not None and meta["n"] == 3 and meta["sampling"] == "n+concurrent"
    assert "concurrent" in meta["warning"]
    assert winner.tool_calls[0]["args"]["city"] in CITIES
