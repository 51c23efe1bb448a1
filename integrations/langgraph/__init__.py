"""LangGraph integration: Q-value-guided action selection as one node, a prebuilt agent, rollouts.

At each agent step the selection node samples N candidate assistant messages from the agent's own
chat model (bound to its tools), renders each to the canonical action text
(:func:`agentq.render.render_action`, the text a Q-model is trained and scored on), scores the
distinct ones with any agentq ``Scorer`` (the core selection step,
:mod:`agentq.search.selection`) and writes only the winning ``AIMessage`` into the state.

What was considered is kept under one key, :data:`SELECTION_KEY` (``"agentq_selection"``): in the
winner's ``response_metadata`` always, and as a state key when the state schema has one (the state
of :func:`create_q_agent` does). Its value is :meth:`agentq.types.Selection.to_dict`::

    {"n": 5, "rule": "score", "candidates": [{"text": ..., "count": 2, "logprob": None}, ...],
     "scores": [0.3, 0.9, ...] | None, "index": 1, "sample_index": 3,
     "scorer": "qmodel:out/", "warning": None, "sampling": "n", "tokens": 120}

``candidates`` are the distinct samples (duplicates merged, each scored once), ``scores`` is
aligned with them, ``index`` is the winner among them and ``sample_index`` the winning sample.

One module per idea:

* :mod:`.messages` - LangChain messages <-> agentq's context (the one converter)
* :mod:`.sampling` - drawing N candidate messages, kept out of the messages stream
* :mod:`.selection` - choosing among them through the core selection step; the metadata
* :mod:`.node` - :class:`QValueSelectionNode` / :func:`create_selection_node`
* :mod:`.agent` - :func:`create_q_agent`, the prebuilt ReAct agent
* :mod:`.env_tools` - :class:`EnvTools` (an agentq environment as tools), :class:`EnvActionScorer`
* :mod:`.rollouts` - :func:`rollout` / :func:`arollout` and their metrics
"""

from agentq.integrations.langgraph.agent import (
    QAgentState,
    QAgentStateWithStructuredResponse,
    _resolve_model,
    create_q_agent,
)
from agentq.integrations.langgraph.env_tools import EnvActionScorer, EnvTools
from agentq.integrations.langgraph.messages import (
    candidate_text,
    message_text,
    to_openai_messages,
)
from agentq.integrations.langgraph.node import (
    CANDIDATES_TASK,
    MORE_STEPS_TEXT,
    QValueSelectionNode,
    check_prompt,
    create_selection_node,
)
from agentq.integrations.langgraph.rollouts import (
    RolloutResult,
    arollout,
    rollout,
    rollout_metrics,
)
from agentq.integrations.langgraph.sampling import (
    CANDIDATE_TAG,
    NOSTREAM_TAGS,
    Samples,
    Sampling,
    asample,
    candidate_config,
    sample_sync,
    sample_tokens,
    supports_n,
)
from agentq.integrations.langgraph.selection import (
    SELECTION_KEY,
    aselect,
    aselect_messages,
    select_messages,
    select_sync,
    selection_of,
    with_selection,
)

from agentq.search.selection import OnError

__all__ = [
    "CANDIDATES_TASK",
    "CANDIDATE_TAG",
    "MORE_STEPS_TEXT",
    "NOSTREAM_TAGS",
    "SELECTION_KEY",
    "EnvActionScorer",
    "EnvTools",
    "OnError",
    "QAgentState",
    "QAgentStateWithStructuredResponse",
    "QValueSelectionNode",
    "RolloutResult",
    "Sampling",
    "Samples",
    "_resolve_model",
    "arollout",
    "asample",
    "aselect",
    "aselect_messages",
    "candidate_config",
    "candidate_text",
    "check_prompt",
    "create_q_agent",
    "create_selection_node",
    "message_text",
    "rollout",
    "rollout_metrics",
    "sample_sync",
    "sample_tokens",
    "select_messages",
    "select_sync",
    "selection_of",
    "supports_n",
    "to_openai_messages",
    "with_selection",
]
