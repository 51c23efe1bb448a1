"""Built-in policies and scorers that need no model: ``random`` (tests and baselines)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from agentq.errors import ProposerError
from agentq.protocols import FREE_TEXT, BaseProposer, BaseScorer
from agentq.seeding import task_rng
from agentq.types import Candidate, Context


class RandomProposer(BaseProposer):
    """Uniform over the environment's ``valid_actions()`` (the ``random`` MODEL spec).

    A free-text argument (``search[...]``) is filled with one to three random words of the
    last message, so the baseline can act in open-ended steps too. Inside a task scope
    (:func:`agentq.seeding.task_scope`, entered by MCTS) the draws come from that task's own
    generator, so trees do not depend on concurrency, splits or resumes; outside one, from a
    generator seeded by ``seed``.
    """

    spec = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._fallback = random.Random(seed)

    @property
    def _rng(self) -> random.Random:
        return task_rng(f"policy:random:{self.seed}", self._fallback)

    def propose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """``n`` actions drawn uniformly with replacement from ``valid_actions``."""
        if not valid_actions:
            raise ProposerError("the random policy needs an environment with valid_actions()")
        words = (
            re.findall(r"[A-Za-z][A-Za-z0-9'-]+", str(context[-1].get("content", "")))
            if context
            else []
        )
        out = []
        for _ in range(n):
            action = self._rng.choice(list(valid_actions))
            if FREE_TEXT in action:  # fill a free-text argument with words from the last message
                k = self._rng.randint(1, 3)
                fill = " ".join(self._rng.choice(words) for _ in range(k)) if words else "x"
                action = action.replace(FREE_TEXT, fill, 1)
            out.append(Candidate(action, logprob=None))
        return out

    async def apropose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """Same as :meth:`propose` (no I/O, no thread)."""
        return self.propose(context, n, valid_actions=valid_actions)


class RandomScorer(BaseScorer):
    """Uniform random scores (the ``random`` SCORER spec: the sampling baseline); per-task
    generators inside a task scope, like :class:`RandomProposer`."""

    spec = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._fallback = random.Random(seed)

    @property
    def _rng(self) -> random.Random:
        return task_rng(f"scorer:random:{self.seed}", self._fallback)

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
