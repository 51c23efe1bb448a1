"""Verification traces: their budgets, their record, their text and tokens, their tool calls.

A trace is the text the reward model writes after the question and answer, in segments:
``model`` (``Thought:`` / ``Action:`` / ``Action Input:`` up to ``Observation:``, where
generation stops), ``observation`` (the executed tool's output, written by agentq) and
``rationale``. Training (recorded steps, :func:`step_segments`) and scoring (generated traces)
encode the same segments the same way (:func:`encode_trace`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentq.react import parse_react
from agentq.render import OBSERVATION_MARKER, _as_ids, observation_after_marker
from agentq.types import Context

OBSERVATION = OBSERVATION_MARKER
"""Where the model's part of a step ends (generation stops there) and the tool's begins."""
RATIONALE = "Rationale:"


@dataclass
class RMBudget:
    """Budgets of one candidate's verification trace."""

    max_tool_calls: int = 3
    max_new_tokens: int = 256
    """Generated tokens per candidate, all rounds together."""
    max_segment_tokens: int = 128
    """Generated tokens per round (between two observations)."""
    tool_timeout_s: float = 10.0
    max_observation_chars: int = 400

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dict(self.__dict__)


@dataclass
class TraceStep:
    """One executed tool call of a generated trace."""

    action: str
    action_input: str
    observation: str
    ok: bool
    source: str = "tool"


@dataclass
class RMTrace:
    """The verification trace of one candidate: model text and observations, in order."""

    segments: list[tuple[str, str]] = field(default_factory=list)
    """``(kind, text)`` with kind ``model`` or ``observation``."""
    steps: list[TraceStep] = field(default_factory=list)
    generated_tokens: int = 0
    finished: bool = False
    budget_hit: str | None = None
    """``tool_calls`` or ``tokens`` when a budget cut the trace (it is scored as it stands)."""
    invalid_calls: int = 0
    score: float | None = None

    @property
    def text(self) -> str:
        """The whole trace as text."""
        return "".join(t for _, t in self.segments)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "text": self.text,
            "steps": [s.__dict__ for s in self.steps],
            "generated_tokens": self.generated_tokens,
            "finished": self.finished,
            "budget_hit": self.budget_hit,
            "invalid_calls": self.invalid_calls,
            "score": self.score,
        }


def clip_observation(observation: str, max_chars: int) -> str:
    """``observation`` cut to ``max_chars`` characters (``" ..."`` marks a cut)."""
    if len(observation) > max_chars:
        return observation[:max_chars] + " ..."
    return observation


def observation_segment(observation: str) -> tuple[str, str]:
    """The ``observation`` segment that follows a model segment ending at ``Observation:``."""
    return ("observation", observation_after_marker(observation) + "\n")


def step_segments(
    steps: Sequence[Any], rationale: str | None, max_observation_chars: int = 400
) -> list[tuple[str, str]]:
    """Trace segments of recorded steps (objects with ``thought``, ``action``,
    ``action_input``, ``observation``) and a rationale, in the text form the model generates."""
    segs: list[tuple[str, str]] = []
    for s in steps:
        head = f"Thought: {s.thought}\n" if getattr(s, "thought", "") else ""
        segs.append(
            ("model", f"{head}Action: {s.action}\nAction Input: {s.action_input}\n{OBSERVATION}")
        )
        segs.append(
            observation_segment(
                clip_observation((s.observation or "").strip(), max_observation_chars)
            )
        )
    if rationale is not None:
        segs.append(("rationale", f"{RATIONALE} {rationale.strip()}"))
    return segs


def encode_trace(
    tokenizer: Any,
    messages: Context,
    segments: Sequence[tuple[str, str]],
    *,
    max_length: int | None = None,
    add_eos: bool = True,
) -> tuple[list[int], list[str]]:
    """Token ids of prompt + trace segments (+ EOS), and the kind of each token.

    Kinds: ``prompt``, ``model`` (tool-call text), ``observation``, ``rationale``, ``eos``.
    Each segment is encoded on its own, exactly as during generation, so training and scoring
    see the same tokens. Longer than ``max_length``: the prompt is cut from the left.
    """
    prompt = _as_ids(
        tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
    )
    ids = list(prompt)
    kinds = ["prompt"] * len(prompt)
    for kind, text in segments:
        seg = tokenizer.encode(text, add_special_tokens=False)
        ids.extend(seg)
        kinds.extend([kind] * len(seg))
    if add_eos and tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
        kinds.append("eos")
    if max_length is not None and len(ids) > max_length:
        ids, kinds = ids[-max_length:], kinds[-max_length:]
    return ids, kinds


def parse_tool_call(text: str) -> tuple[str, str] | None:
    """The last ``Action:`` / ``Action Input:`` of a generated segment (None when absent).

    The segment is read up to its ``Observation:`` by agentq's one ReAct parser
    (:func:`agentq.react.parse_react`); the tool name is the ``Action:`` line, the input all of
    the ``Action Input:`` field.
    """
    body = text[: text.rfind(OBSERVATION)] if OBSERVATION in text else text
    step = next((s for s in reversed(parse_react(body)) if s.action is not None), None)
    if step is None or step.action_input is None:
        return None
    return step.action_name or "", step.action_input


__all__ = [
    "OBSERVATION",
    "RATIONALE",
    "RMBudget",
    "RMTrace",
    "TraceStep",
    "clip_observation",
    "encode_trace",
    "observation_segment",
    "parse_tool_call",
    "step_segments",
]
