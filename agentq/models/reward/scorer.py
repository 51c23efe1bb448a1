"""The tool-augmented reward model as a Scorer (spec ``rm:DIR``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentq.errors import ScorerError, UserInputError
from agentq.models.reward.model import TRACE_MODES, ToolAugmentedRewardModel
from agentq.models.reward.prompt import question_of
from agentq.models.reward.storage import load_reward_model
from agentq.models.reward.trace import RMBudget, RMTrace
from agentq.protocols import BaseScorer
from agentq.types import Context


class ToolAugmentedScorer(BaseScorer):
    """A :class:`ToolAugmentedRewardModel` as a Scorer (spec ``rm:DIR``).

    ``score(context, actions)`` verifies every candidate with tools (one batched generation
    across the candidates, or across all items of ``score_batch``) and returns the value-head
    scores. ``trace="none"`` skips the trace (a plain reward model on question + answer); ``trace="no-tools"`` generates it without executing any tool. Tool
    results are cached for the scorer's lifetime; ``last_traces`` holds the traces of the last
    call (with ``budget_hit`` flags). ``prepare_pairs`` loads TARA's recorded observations of
    live services, as the ``tool-verify`` scorer does.
    """

    def __init__(
        self,
        model: ToolAugmentedRewardModel,
        *,
        trace: str = "generate",
        budget: RMBudget | None = None,
        use_recorded: bool = True,
    ) -> None:
        if trace not in TRACE_MODES:
            raise UserInputError(f"trace must be one of {', '.join(TRACE_MODES)}, not {trace!r}")
        self.model = model
        self.trace = trace
        self.budget = budget or model.budget
        self.use_recorded = use_recorded
        self.executor = model.new_executor(self.budget.tool_timeout_s)
        self.last_traces: list[RMTrace] = []

    def prepare_pairs(self, pairs: Sequence[Any]) -> int:
        """Load recorded live-service observations from TARA pairs (when ``use_recorded``)."""
        return self.executor.add_tara_records(pairs) if self.use_recorded else 0

    def stats(self) -> dict[str, Any]:
        """The value pass's prefix-cache use and the cache's bytes and budget."""
        d = self.model.cache_stats.to_dict()
        cache = self.model.prefix_cache
        d["cache"] = cache.stats() if cache is not None else None
        return d

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """One value-head score per candidate (higher is better)."""
        return self.score_batch([(context, actions)])[0]

    def score_batch(self, items: Sequence[tuple[Context, Sequence[str]]]) -> list[list[float]]:
        """Score several (context, actions) items with one batched generation."""
        flat = [(question_of(ctx), a) for ctx, acts in items for a in acts]
        try:
            vals = self.model.score_items(flat, self.executor, trace=self.trace, budget=self.budget)
        except UserInputError:
            raise
        except Exception as e:
            raise ScorerError(f"reward model failed: {type(e).__name__}: {e}") from e
        self.last_traces = list(self.model.last_traces)
        out: list[list[float]] = []
        i = 0
        for _, acts in items:
            out.append(vals[i : i + len(acts)])
            i += len(acts)
        return out


def scorer_from_spec(directory: str, **options: Any) -> ToolAugmentedScorer:
    """Build the scorer of spec ``rm:DIR``.

    Options: ``device``, ``dtype``, ``base_model`` (override), ``pooling`` (``last``/``mean``),
    ``trace`` (``generate``/``no-tools``/``none``), ``max_tool_calls``, ``max_new_tokens``,
    ``max_segment_tokens``, ``tool_timeout_s``, ``use_recorded``, ``prefix_cache``
    (true/false) and ``cache_bytes`` (its budget). Unknown options (such as ``seed``) are
    ignored.
    """
    from agentq.models.prefix_cache import parse_cache_bytes, resolve_prefix_cache

    if options.get("cache_bytes") is not None:  # bad input before the model loads
        parse_cache_bytes(options["cache_bytes"])
    rm = load_reward_model(
        directory,
        device=options.get("device"),
        dtype=options.get("dtype"),
        base_model=options.get("base_model"),
        pooling=options.get("pooling"),
    )
    rm.prefix_cache = resolve_prefix_cache(
        options.get("prefix_cache", True), options.get("cache_bytes")
    )
    b = RMBudget(**rm.budget.to_dict())
    for k in ("max_tool_calls", "max_new_tokens", "max_segment_tokens", "tool_timeout_s"):
        if options.get(k) is not None:
            setattr(b, k, type(getattr(b, k))(options[k]))
    return ToolAugmentedScorer(
        rm,
        trace=options.get("trace", "generate"),
        budget=b,
        use_recorded=bool(options.get("use_recorded", True)),
    )


__all__ = ["ToolAugmentedScorer", "scorer_from_spec"]
