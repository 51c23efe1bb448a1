"""The one renderer: how actions, tool calls and observations become text and model input.

Collection, training and inference all go through these functions, so the tokens a Q-model
was trained on are the tokens it scores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agentq.types import Context, Message

TOOL_CALL_PREFIX = "Tool call: "


def render_tool_call(name: str, args: dict[str, Any] | str | None) -> str:
    """Canonical text of one tool call: JSON with sorted keys, no extra whitespace."""
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            pass
    payload = {"name": name, "arguments": args if args is not None else {}}
    return TOOL_CALL_PREFIX + json.dumps(
        payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )


def render_action(
    content: str | None = None, tool_calls: Sequence[dict[str, Any]] | None = None
) -> str:
    """Canonical action text of an assistant turn: its text, then one line per tool call.

    ``tool_calls`` items may be OpenAI-style (``{"function": {"name", "arguments"}}``) or
    LangChain-style (``{"name", "args"}``).
    """
    parts: list[str] = []
    if content and content.strip():
        parts.append(content.strip())
    for call in tool_calls or []:
        if "function" in call:
            fn = call["function"]
            parts.append(render_tool_call(fn.get("name", ""), fn.get("arguments")))
        else:
            parts.append(
                render_tool_call(call.get("name", ""), call.get("args", call.get("arguments")))
            )
    return "\n".join(parts)


def assistant_message(action: str) -> Message:
    """The assistant message that carries ``action``."""
    return {"role": "assistant", "content": action}


def observation_message(observation: str) -> Message:
    """The message that carries an environment observation back to the agent."""
    return {"role": "user", "content": f"Observation: {observation}"}


def advance_context(context: Context, action: str, observation: str) -> Context:
    """The context after taking ``action`` and seeing ``observation`` (a new list)."""
    return [*context, assistant_message(action), observation_message(observation)]


def context_along(context: Context, steps: Sequence[tuple[str, str]]) -> Context:
    """Apply :func:`advance_context` for each (action, observation) pair."""
    out = list(context)
    for action, obs in steps:
        out = advance_context(out, action, obs)
    return out


def tokenize_for_scoring(
    tokenizer: Any,
    context: Context,
    action: str,
    max_length: int | None = None,
) -> tuple[list[int], list[int]]:
    """Token ids of (prompt, action) under the tokenizer's chat template.

    The prompt is the context with the generation prompt; the action tokens are the rest of the
    full conversation (the assistant turn including its end-of-turn token). When the total is
    longer than ``max_length`` the prompt is truncated from the left, so the action stays whole.
    Raises ``ValueError`` when the action alone does not fit.
    """
    prompt_ids = _as_ids(
        tokenizer.apply_chat_template(list(context), add_generation_prompt=True, tokenize=True)
    )
    full_ids = _as_ids(
        tokenizer.apply_chat_template([*context, assistant_message(action)], tokenize=True)
    )
    if full_ids[: len(prompt_ids)] == prompt_ids:
        action_ids = full_ids[len(prompt_ids) :]
    else:  # templates that rewrite earlier turns: fall back to encoding the difference as text
        prompt_text = tokenizer.apply_chat_template(
            list(context), add_generation_prompt=True, tokenize=False
        )
        full_text = tokenizer.apply_chat_template(
            [*context, assistant_message(action)], tokenize=False
        )
        action_ids = tokenizer.encode(full_text[len(prompt_text) :], add_special_tokens=False)
    if max_length is not None and len(prompt_ids) + len(action_ids) > max_length:
        keep = max_length - len(action_ids)
        if keep <= 0:
            raise ValueError(
                f"action of {len(action_ids)} tokens does not fit in max_length={max_length}"
            )
        prompt_ids = prompt_ids[-keep:]
    return prompt_ids, action_ids


def _as_ids(x: Any) -> list[int]:
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    if hasattr(x, "tolist"):
        x = x.tolist()
    if x and isinstance(x[0], list):
        x = x[0]
    return list(x)
