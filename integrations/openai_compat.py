"""OpenAI-compatible servers (vLLM and others) over httpx: a Proposer and a Q-value Scorer.

This module gathers the names of three modules, one idea each:

* :mod:`agentq.integrations.http` - :class:`AsyncHTTPClient`, the one async httpx client every
  remote part of agentq uses (pooled, bounded concurrency, retries with backoff and jitter by
  :class:`RetryPolicy`, typed errors; sync twins on a background loop).
* :mod:`agentq.integrations.openai_proposer` - :class:`OpenAIProposer`: chat completions with
  ``n`` candidates (falling back to N parallel requests for servers that ignore ``n``) and the
  sum of the token log-probs when the server returns them. MODEL spec ``openai:URL#model``.
* :mod:`agentq.integrations.vllm_scorer` - :class:`VLLMQValueScorer`: a step-level Q-value
  model served by vLLM (base model and LoRA adapter as two served names); each (context,
  action) is tokenised with :func:`agentq.render.tokenize_for_scoring` and sent as token ids
  to ``/v1/completions`` with ``prompt_logprobs``, so the tokens scored are exactly the
  training tokens. SCORER spec ``vllm-q:URL#adapter``.

The errors live in :mod:`agentq.errors`.
"""

from __future__ import annotations

from agentq.integrations.http import RETRY_STATUSES, AsyncHTTPClient, RetryPolicy
from agentq.integrations.openai_proposer import (
    OpenAIProposer,
    _check_choices,
    _choice_candidate,
    _with_usage,
    parse_openai_spec,
    proposer_from_spec,
    resolve_api_key,
)
from agentq.integrations.vllm_scorer import (
    VLLMQValueScorer,
    _prompt_logprobs,
    vllm_scorer_from_spec,
)

from agentq.errors import MalformedResponse, RemoteRequestError, RemoteUnavailableError

__all__ = [
    "RETRY_STATUSES",
    "AsyncHTTPClient",
    "MalformedResponse",
    "OpenAIProposer",
    "RemoteRequestError",
    "RemoteUnavailableError",
    "RetryPolicy",
    "VLLMQValueScorer",
    "_check_choices",
    "_choice_candidate",
    "_prompt_logprobs",
    "_with_usage",
    "parse_openai_spec",
    "proposer_from_spec",
    "resolve_api_key",
    "vllm_scorer_from_spec",
]
