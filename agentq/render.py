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
OBSERVATION_MARKER = "Observation:"
"""The word that introduces an observation in agent text (and ends a ReAct step's tool call)."""


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


OBSERVATION_PREFIX = OBSERVATION_MARKER + " "
"""What starts the text of an observation turn (``Observation: ``)."""


def observation_text(observation: str) -> str:
    """The one text form of an observation: ``Observation: <observation>``.

    Chat contexts, ReAct traces and data files all write observations through this function.
    """
    return f"{OBSERVATION_MARKER} {observation}"


def observation_after_marker(observation: str) -> str:
    """What follows :data:`OBSERVATION_MARKER` in :func:`observation_text`: a trace whose model
    segment ends at the marker (generation stops there) continues with this text."""
    return observation_text(observation)[len(OBSERVATION_MARKER) :]


def observation_message(observation: str) -> Message:
    """The message that carries an environment observation back to the agent."""
    return {"role": "user", "content": observation_text(observation)}


def advance_context(context: Context, action: str, observation: str) -> Context:
    """The context after taking ``action`` and seeing ``observation`` (a new list)."""
    return [*context, assistant_message(action), observation_message(observation)]


def context_along(context: Context, steps: Sequence[tuple[str, str]]) -> Context:
    """Apply :func:`advance_context` for each (action, observation) pair."""
    out = list(context)
    for action, obs in steps:
        out = advance_context(out, action, obs)
    return out


KEPT_HEAD_MESSAGES = 2
"""Messages a truncated context always keeps: the system prompt and the first user turn (the
task). When the context does not start with a system message only the first turn is kept."""


def _head_size(context: Context) -> int:
    if context and context[0].get("role") == "system":
        return min(KEPT_HEAD_MESSAGES, len(context))
    return min(1, len(context))


def _prompt_ids(tokenizer: Any, context: Context) -> list[int]:
    return _as_ids(
        tokenizer.apply_chat_template(list(context), add_generation_prompt=True, tokenize=True)
    )


def _encode_pair(
    tokenizer: Any, context: Context, action: str, prompt_ids: list[int] | None = None
) -> tuple[list[int], list[int]]:
    if prompt_ids is None:
        prompt_ids = _prompt_ids(tokenizer, context)
    full_ids = _as_ids(
        tokenizer.apply_chat_template([*context, assistant_message(action)], tokenize=True)
    )
    if full_ids[: len(prompt_ids)] == prompt_ids:
        return prompt_ids, full_ids[len(prompt_ids) :]
    # templates that rewrite earlier turns: fall back to encoding the difference as text
    prompt_text = tokenizer.apply_chat_template(
        list(context), add_generation_prompt=True, tokenize=False
    )
    full_text = tokenizer.apply_chat_template([*context, assistant_message(action)], tokenize=False)
    return prompt_ids, tokenizer.encode(full_text[len(prompt_text) :], add_special_tokens=False)


class _TurnDrops:
    """The contexts :func:`truncate_context` passes through for one context, each rendered
    once, so several budgets (one per candidate action) cost one series of drops."""

    def __init__(self, tokenizer: Any, context: Context, ids: list[int] | None = None) -> None:
        self.tokenizer = tokenizer
        self.head = _head_size(context)
        ctx = list(context)
        self.states = [(ctx, _prompt_ids(tokenizer, ctx) if ids is None else ids, 0)]
        self._head_ids: list[int] | None = None

    def _drop_next(self) -> bool:
        ctx, _, dropped = self.states[-1]
        head = self.head
        if len(ctx) <= head + 1:
            return False
        # drop the oldest middle turn; keep assistant/observation pairs together
        k = 2 if len(ctx) > head + 2 and ctx[head].get("role") == "assistant" else 1
        ctx = ctx[:head] + ctx[head + k :]
        self.states.append((ctx, _prompt_ids(self.tokenizer, ctx), dropped + k))
        return True

    def fit(self, budget: int) -> tuple[Context, list[int], int]:
        i = 0
        while len(self.states[i][1]) > budget:
            if i + 1 == len(self.states) and not self._drop_next():
                break
            i += 1
        ctx, ids, dropped = self.states[i]
        if len(ids) > budget:
            head = self.head
            if self._head_ids is None:
                self._head_ids = _as_ids(
                    self.tokenizer.apply_chat_template(ctx[:head], tokenize=True)
                )
            head_ids = self._head_ids
            if ids[: len(head_ids)] == head_ids and len(head_ids) < budget:
                ids = head_ids + ids[len(ids) - (budget - len(head_ids)) :]
            else:
                ids = ids[-budget:] if budget > 0 else []
        return ctx, list(ids), dropped


def truncate_context(
    tokenizer: Any, context: Context, budget: int
) -> tuple[Context, list[int], int]:
    """The context cut to fit ``budget`` prompt tokens, its prompt ids and the turns dropped.

    Whole turns are dropped from the middle, oldest first (an assistant turn together with the
    observation that followed it); the system prompt and the first user turn (the task) always
    stay, and so does the latest turn. When even that is too long, the prompt keeps the tokens of
    the kept head and fills the rest of the budget with the end of the remaining text (a cut
    inside the latest turns, never of the task). This is the one truncation rule of agentq:
    collection, training, scoring, generation and the server all call it.
    """
    return _TurnDrops(tokenizer, context).fit(budget)


def tokenize_actions_for_scoring(
    tokenizer: Any,
    context: Context,
    actions: Sequence[str],
    max_length: int | None = None,
) -> list[tuple[list[int], list[int]]]:
    """:func:`tokenize_for_scoring` of each of ``actions`` after one ``context``, with the
    prompt rendered once and each truncation of it once (the results are the same)."""
    prompt_ids = _prompt_ids(tokenizer, context)
    drops: _TurnDrops | None = None
    out = []
    for action in actions:
        prompt, action_ids = _encode_pair(tokenizer, context, action, prompt_ids)
        if max_length is not None and len(prompt) + len(action_ids) > max_length:
            keep = max_length - len(action_ids)
            if keep <= 0:
                raise ValueError(
                    f"action of {len(action_ids)} tokens does not fit in max_length={max_length}"
                )
            if drops is None:
                drops = _TurnDrops(tokenizer, context, prompt_ids)
            prompt = drops.fit(keep)[1]  # a list of its own
        else:
            prompt = list(prompt)  # prompt_ids is every action's: each gets its own list
        out.append((prompt, action_ids))
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
    longer than ``max_length`` the context is cut by :func:`truncate_context` (whole middle turns
    first; the system prompt and the task stay), so the action stays whole.
    Raises ``ValueError`` when the action alone does not fit.
    """
    return tokenize_actions_for_scoring(tokenizer, context, [action], max_length)[0]


def _as_ids(x: Any) -> list[int]:
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    if hasattr(x, "tolist"):
        x = x.tolist()
    if x and isinstance(x[0], list):
        x = x[0]
    return list(x)
