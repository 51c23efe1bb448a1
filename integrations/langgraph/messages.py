"""LangChain messages <-> agentq's context (OpenAI chat dicts): the one converter.

:func:`to_openai_messages` is the only place a LangChain message list becomes agentq's
context: the selection node and the LangChain middleware build scorer contexts with it, and
:class:`~agentq.integrations.chat_model.LocalChatModel` its prompt (tool results as
``Observation: ...`` turns, the form agentq's environments and Q-models use).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)

from agentq.render import observation_message, render_action
from agentq.types import Context, Message

ToolResults = Literal["tool", "observation"]


def message_text(content: Any) -> str:
    """The text of a message's content: a str as is, content blocks' text parts joined."""
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


def openai_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """A LangChain tool call (``{"name", "args", "id"}``) in the OpenAI form."""
    return {
        "id": call.get("id") or "",
        "type": "function",
        "function": {
            "name": call.get("name", ""),
            "arguments": json.dumps(call.get("args") or {}, sort_keys=True, ensure_ascii=False),
        },
    }


def candidate_text(message: AIMessage) -> str:
    """The canonical action text of an assistant message (its text, then one line per call)."""
    return render_action(message_text(message.content), [dict(c) for c in message.tool_calls])


def _role(m: BaseMessage) -> str:
    if isinstance(m, SystemMessage):
        return "system"
    if isinstance(m, HumanMessage):
        return "user"
    if isinstance(m, AIMessage):
        return "assistant"
    if isinstance(m, ToolMessage):
        return "tool"
    return str(getattr(m, "role", None) or {"function": "tool"}.get(m.type, m.type))


def to_openai_messages(messages: Sequence[Any], *, tool_results: ToolResults = "tool") -> Context:
    """Convert LangChain messages (or anything ``convert_to_messages`` takes) to OpenAI dicts.

    This is the context handed to scorers. System, human, AI, tool and chat messages keep their
    roles (``system``, ``user``, ``assistant``, ``tool``, the chat role); content blocks are
    flattened to their text. An assistant turn carries its canonical action text
    (:func:`agentq.render.render_action`, the text Q-models are trained on) as ``content`` and
    its calls in OpenAI form under ``tool_calls``; tool messages keep ``tool_call_id`` and
    ``name``. With ``tool_results="observation"`` a tool result is agentq's observation turn
    instead (:func:`agentq.render.observation_message`: a user turn ``Observation: ...``), for
    chat templates without a tool role.
    """
    out: Context = []
    for m in convert_to_messages(list(messages)):
        text = message_text(m.content)
        role = _role(m)
        msg: Message
        if role == "tool" and tool_results == "observation":
            msg = observation_message(text)
        elif isinstance(m, AIMessage):
            calls = [dict(c) for c in m.tool_calls]
            msg = {"role": role, "content": render_action(text, calls)}
            if calls:
                msg["tool_calls"] = [openai_tool_call(c) for c in calls]
        elif isinstance(m, ToolMessage):
            msg = {"role": role, "content": text, "tool_call_id": m.tool_call_id}
            if m.name:
                msg["name"] = m.name
        else:
            msg = {"role": role, "content": text}
        out.append(msg)
    return out


__all__ = [
    "ToolResults",
    "candidate_text",
    "message_text",
    "openai_tool_call",
    "to_openai_messages",
]
