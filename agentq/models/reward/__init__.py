"""The tool-augmented reward model (Themis, Li et al., "Tool-Augmented Reward Modeling", ICLR
2024), spec ``rm:DIR``: a causal LM with a scalar value head first writes a verification trace
in ReAct form (``Thought:`` / ``Action:`` / ``Action Input:``), agentq executes each tool call
and feeds back ``Observation:``, the model writes ``Rationale:``, and the score is the value
head at the last token (or mean-pooled). Generation is batched across candidates; budgets
bound tool calls, tokens and tool time.

One file per idea:

- :mod:`~agentq.models.reward.tools`: what the model needs from tools (:class:`Toolset`,
  :class:`ToolRunner`, :class:`ToolResult`) and :func:`load_toolset`, which finds a tool set
  by name among the ``agentq.toolsets`` entry points;
- :mod:`~agentq.models.reward.prompt`: the question of a context, the system prompt;
- :mod:`~agentq.models.reward.trace`: budgets, traces, their segments and tokens, tool calls;
- :mod:`~agentq.models.reward.model`: :class:`ToolAugmentedRewardModel` (generation, values);
- :mod:`~agentq.models.reward.storage`: its directory (save, read, load);
- :mod:`~agentq.models.reward.scorer`: :class:`ToolAugmentedScorer` and ``rm:DIR``.

The tools themselves, their one executor and the non-learned ``tool-verify`` scorer belong to
the tool-use environment (:mod:`agentq.envs.tooluse.tara`, :mod:`~agentq.envs.tooluse.executor`,
:mod:`~agentq.envs.tooluse.verify`); the core imports no environment.
"""

from __future__ import annotations

from typing import Any

from agentq.models.reward.model import POOLINGS, TRACE_MODES, ToolAugmentedRewardModel, pad_right
from agentq.models.reward.prompt import (
    RM_SYSTEM_PROMPT,
    question_of,
    rm_messages,
    tool_descriptions,
)
from agentq.models.reward.scorer import ToolAugmentedScorer, scorer_from_spec
from agentq.models.reward.storage import (
    RM_CONFIG_FILE,
    RM_FORMAT,
    RM_FORMAT_VERSION,
    VALUE_HEAD_FILE,
    load_reward_model,
    read_rm_config,
    save_reward_model,
)
from agentq.models.reward.tools import (
    DEFAULT_TOOLSET,
    RMTool,
    ToolResult,
    ToolRunner,
    Toolset,
    load_toolset,
)
from agentq.models.reward.trace import (
    OBSERVATION,
    RATIONALE,
    RMBudget,
    RMTrace,
    TraceStep,
    clip_observation,
    encode_trace,
    observation_segment,
    parse_tool_call,
    step_segments,
)

#: Names this module held before it became a package, now on the environment's side.
MOVED = {
    **dict.fromkeys(
        (
            "AnnotationCalculator",
            "RECORDED_TOOLS",
            "TaraDayDifference",
            "TaraTargetDay",
            "TaraWeekDay",
            "tara_tools",
        ),
        "agentq.envs.tooluse.tara",
    ),
    "RecordedTool": "agentq.envs.tooluse.recorded",
    "ToolExecutor": "agentq.envs.tooluse.executor",
    **dict.fromkeys(
        (
            "CHECKERS",
            "WEATHER_FIELDS",
            "Claim",
            "ToolVerifyScorer",
            "Verification",
            "check_calculations",
            "check_calendar",
            "check_support",
            "check_weather",
            "parse_weather_observation",
            "verify",
        ),
        "agentq.envs.tooluse.verify",
    ),
}


def __getattr__(name: str) -> Any:
    """A name that moved to the tool-use environment: an ``ImportError`` saying where it is now
    (``from agentq.models.reward import ToolExecutor`` then names the module to import from)."""
    if name in MOVED:
        raise ImportError(
            f"agentq.models.reward.{name} moved to {MOVED[name]} (the core imports no "
            f"environment): from {MOVED[name]} import {name}"
        )
    raise AttributeError(f"module 'agentq.models.reward' has no attribute {name!r}")


__all__ = [
    "DEFAULT_TOOLSET",
    "OBSERVATION",
    "POOLINGS",
    "RATIONALE",
    "RM_CONFIG_FILE",
    "RM_FORMAT",
    "RM_FORMAT_VERSION",
    "RM_SYSTEM_PROMPT",
    "TRACE_MODES",
    "VALUE_HEAD_FILE",
    "RMBudget",
    "RMTool",
    "RMTrace",
    "ToolAugmentedRewardModel",
    "ToolAugmentedScorer",
    "ToolResult",
    "ToolRunner",
    "Toolset",
    "TraceStep",
    "clip_observation",
    "encode_trace",
    "load_reward_model",
    "load_toolset",
    "observation_segment",
    "pad_right",
    "parse_tool_call",
    "question_of",
    "read_rm_config",
    "rm_messages",
    "save_reward_model",
    "scorer_from_spec",
    "step_segments",
    "tool_descriptions",
]
