"""Built-in policies and scorers that need no model: ``random`` (tests and baselines)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from agentq.errors import ProposerError
from agentq.protocols import BaseProposer, BaseScorer
from agentq.types import Candidate, Context


class RandomProposer(BaseProposer):
    """Uniform over the environment's ``valid_actions()`` (the ``random`` MODEL spec)."""

    spec = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def propose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """``n`` actions drawn uniformly with replacement from ``valid_actions``."""
        if not valid_actions:
            raise ProposerError("the random policy needs an environment with valid_actions()")
        return [Candidate(self._rng.choice(list(valid_actions)), logprob=None) for _ in range(n)]

    async def apropose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """Same as :meth:`propose` (no I/O, no thread)."""
        return self.propose(context, n, valid_actions=valid_actions)


class RandomScorer(BaseScorer):
    """Uniform random scores (the ``random`` SCORER spec: the sampling baseline)."""

    spec = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """One uniform draw per action."""
        return [self._rng.random() for _ in actions]

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Same as :meth:`score`."""
        return self.score(context, actions)


def merge_candidates(cands: Sequence[Candidate]) -> list[Candidate]:
    """Merge identical texts (first occurrence order), summing their counts."""
    out: dict[str, Candidate] = {}
    for c in cands:
        if c.text in out:
            out[c.text].count += c.count
        else:
            out[c.text] = Candidate(c.text, c.logprob, c.count, c.tokens)
    return list(out.values())
