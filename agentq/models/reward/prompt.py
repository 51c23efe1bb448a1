"""The reward model's prompt: what a candidate answers, the system prompt, the tool list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentq.data.tara import split_context
from agentq.types import Context

RM_SYSTEM_PROMPT = (
    "You are a reward model that checks an answer with tools before judging it. "
    "Verify the answer step by step: write 'Thought: ...', 'Action: <tool name>' and "
    "'Action Input: <input>' on separate lines, then stop; the tool's result comes back as "
    "'Observation: ...'. When you have checked enough, write 'Rationale: ...' saying whether "
    "the answer is correct and why.\nTools:\n{tools}"
)


def question_of(context: Context) -> str:
    """The text a candidate answers: the user message of a one-question context, else the
    conversation as ``role: content`` lines (system messages left out)."""
    msgs = [m for m in context if m.get("role") != "system" and m.get("content")]
    if len(msgs) == 1:
        return str(msgs[0]["content"])
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in msgs)


def tool_descriptions(tools: Mapping[str, Any]) -> str:
    """One line per tool: ``- name: description``."""
    return "\n".join(f"- {name}: {t.description}" for name, t in tools.items())


def rm_messages(
    question: str, answer: str, tools_text: str, system_prompt: str = RM_SYSTEM_PROMPT
) -> Context:
    """The reward model's prompt messages for one (question, answer).

    A question that carries a TARA ``context`` (``Context: ...\\nQuestion: ...``, as Themis
    prepends it) keeps it on the line before ``Question:``.
    """
    ctx, q = split_context(question)
    head = f"Context: {ctx}\n" if ctx is not None else ""
    return [
        {"role": "system", "content": system_prompt.format(tools=tools_text)},
        {"role": "user", "content": f"{head}Question: {q}\nAnswer: {answer}"},
    ]


__all__ = ["RM_SYSTEM_PROMPT", "question_of", "rm_messages", "tool_descriptions"]
