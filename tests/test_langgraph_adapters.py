"""The LangGraph/LangChain adapters over the core selection step, and the one converter."""

from __future__ import annotations

import json

import pytest
from agentq.integrations.chat_model import chat_messages
from agentq.integrations.langgraph import (
    Samples,
    aselect_messages,
    select_messages,
    select_sync,
    to_openai_messages,
)
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from agentq.errors import ScorerError
from agentq.render import observation_message, observation_text
from agentq.types import Selection


class ByLength:
    spec = "by-length"

    def score(self, context, actions):
        return [float(len(a)) for a in actions]


def test_select_messages_is_the_core_selection_with_how_the_samples_were_drawn():
    samples = [AIMessage("ab"), AIMessage("abc"), AIMessage("ab"), AIMessage("abc")]
    drawn = Samples(samples, "1 of 5 samples failed (ValueError: x)", "concurrent", 40)
    sel = select_messages(samples, [], ByLength(), drawn=drawn)
    assert isinstance(sel, Selection)
    assert sel.texts == ["ab", "abc"] and sel.counts == [2, 2] and sel.n == 4
    assert sel.index == 1 and sel.sample_index == 1 and sel.scores == [2.0, 3.0]
    assert sel.sampling == "concurrent" and sel.tokens == 40 and "1 of 5" in sel.warning
    d = sel.to_dict()
    assert Selection.from_dict(d).to_dict() == d
    json.dumps(d, allow_nan=False)


async def test_async_adapter_agrees_and_fallback_warnings_are_joined():
    samples = [AIMessage("a"), AIMessage("bb")]

    class Down:
        def score(self, context, actions):
            raise ConnectionError("down")

    drawn = Samples(samples, "the model ignores n", "concurrent", None)
    sel = await aselect_messages(samples, [], Down(), "fallback", drawn=drawn)
    assert sel.sample_index == 0 and sel.scores is None
    assert sel.warning.startswith("scorer failed (ConnectionError: down)")
    assert sel.warning.endswith("; the model ignores n")
    with pytest.raises(ScorerError, match="ConnectionError"):
        await aselect_messages(samples, [], Down())
    assert (await aselect_messages(samples, [], ByLength())).to_dict() == select_messages(
        samples, [], ByLength()
    ).to_dict()


def test_an_empty_message_is_a_candidate_like_any_other():
    i, meta = select_sync([AIMessage(""), AIMessage("x")], [], ByLength())
    assert i == 1 and [c["text"] for c in meta["candidates"]] == ["", "x"]


def test_one_converter_for_scorer_contexts_and_the_local_chat_prompt():
    msgs = [
        SystemMessage("sys"),
        HumanMessage("go"),
        AIMessage(" ok ", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c1"}]),
        ToolMessage("result", tool_call_id="c1", name="f"),
        AIMessage("  done  "),
    ]
    as_tool = to_openai_messages(msgs)
    as_obs = to_openai_messages(msgs, tool_results="observation")
    assert as_tool[3]["role"] == "tool" and as_obs[3] == observation_message("result")
    assert as_obs[3]["content"] == observation_text("result") == "Observation: result"
    assert as_tool[4]["content"] == as_obs[4]["content"] == "done"  # the canonical action text
    chat = chat_messages(msgs)
    assert chat == [{"role": m["role"], "content": m["content"]} for m in as_obs]
