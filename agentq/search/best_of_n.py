"""Best-of-N action selection: propose N candidates, score them, execute the best."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentq.policies import merge_candidates
from agentq.types import Candidate, Context


@dataclass
class Selection:
    """The outcome of one selection: every (merged) candidate, its score and the winner."""

    candidates: list[Candidate]
    scores: list[float]
    index: int

    @property
    def action(self) -> str:
        """The winning action text."""
        return self.candidates[self.index].text


def pick(candidates: Sequence[Candidate], scores: Sequence[float]) -> int:
    """Index of the highest score; ties go to the candidate sampled most often, then the first."""
    if not candidates:
        raise ValueError("no candidates to pick from")
    return max(range(len(candidates)), key=lambda i: (scores[i], candidates[i].count, -i))


def select_best(
    context: Context,
    proposer: object,
    scorer: object,
    n: int,
    *,
    valid_actions: Sequence[str] | None = None,
) -> Selection:
    """Propose ``n`` candidates, score each distinct one once, return the best (sync)."""
    cands = merge_candidates(proposer.propose(context, n, valid_actions=valid_actions))  # type: ignore[attr-defined]
    if len(cands) == 1:
        return Selection(cands, [0.0], 0)
    scores = list(scorer.score(context, [c.text for c in cands]))  # type: ignore[attr-defined]
    return Selection(cands, scores, pick(cands, scores))


async def aselect_best(
    context: Context,
    proposer: object,
    scorer: object,
    n: int,
    *,
    valid_actions: Sequence[str] | None = None,
) -> Selection:
    """Async twin of :func:`select_best`."""
    cands = merge_candidates(await proposer.apropose(context, n, valid_actions=valid_actions))  # type: ignore[attr-defined]
    if len(cands) == 1:
        return Selection(cands, [0.0], 0)
    scores = list(await scorer.ascore(context, [c.text for c in cands]))  # type: ignore[attr-defined]
    return Selection(cands, scores, pick(cands, scores))
