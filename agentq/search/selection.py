"""The selection step: propose N candidates, merge duplicates, score, validate, pick one.

This is the one place agentq chooses an action. The eval runner, the LangGraph node, the
LangChain middleware and :class:`~agentq.integrations.langgraph.EnvActionScorer` are thin
adapters over :func:`select` / :func:`aselect` (candidates already sampled) and
:func:`select_best` / :func:`aselect_best` (propose, then select).

Rules (how the winner is chosen among the merged candidates):

* ``"score"``: the scorer's highest score; ties go to the candidate sampled most often, then
  the first. One distinct candidate is not scored (``scores`` stays None).
* ``"random"``: uniform over the N raw samples (weighted by count); not scored.
* ``"majority"``: the most sampled text (then the higher log-prob, then the first); not scored.
* ``"first"``: the first sample (greedy, plain sampling); not scored.

Scores are validated (one finite number per candidate). A failing scorer raises
:class:`~agentq.errors.ScorerError` with ``on_error="raise"``; with ``"fallback"`` the first
sample wins and :attr:`Selection.warning` says why.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentq.errors import ProposerError, ScorerError
from agentq.policies import merge_candidates
from agentq.protocols import Proposer, Scorer
from agentq.types import Candidate, Context

logger = logging.getLogger(__name__)

Rule = Literal["score", "random", "majority", "first"]
OnError = Literal["raise", "fallback"]
RULES: tuple[str, ...] = ("score", "random", "majority", "first")


@dataclass
class Selection:
    """The outcome of one selection step.

    ``candidates`` are the merged samples (``count`` = how many of the ``n`` samples had that
    text, first-occurrence order); ``scores`` is aligned with them, or None when nothing was
    scored (one distinct candidate, a rule that does not score, a scorer failure under
    ``on_error="fallback"``). :meth:`to_dict` is the selection metadata format everywhere
    (eval trajectories, LangGraph messages, the middleware).
    """

    candidates: list[Candidate]
    index: int
    scores: list[float] | None = None
    n: int = 0
    rule: str = "score"
    scorer: str | None = None
    warning: str | None = None

    @property
    def winner(self) -> Candidate:
        """The chosen candidate."""
        return self.candidates[self.index]

    @property
    def action(self) -> str:
        """The chosen action text."""
        return self.candidates[self.index].text

    @property
    def texts(self) -> list[str]:
        """The distinct candidate texts, in order."""
        return [c.text for c in self.candidates]

    @property
    def counts(self) -> list[int]:
        """How many samples each distinct candidate stands for."""
        return [c.count for c in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON selection metadata: n, rule, candidates (text, count, logprob), scores,
        index, scorer, warning."""
        return {
            "n": self.n,
            "rule": self.rule,
            "candidates": [
                {"text": c.text, "count": c.count, "logprob": c.logprob} for c in self.candidates
            ],
            "scores": None if self.scores is None else list(self.scores),
            "index": self.index,
            "scorer": self.scorer,
            "warning": self.warning,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Selection:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        cands = [
            Candidate(str(c["text"]), logprob=c.get("logprob"), count=int(c.get("count", 1)))
            for c in d.get("candidates") or []
        ]
        scores = d.get("scores")
        return cls(
            candidates=cands,
            index=int(d.get("index", 0)),
            scores=None if scores is None else [float(s) for s in scores],
            n=int(d.get("n", sum(c.count for c in cands))),
            rule=str(d.get("rule", "score")),
            scorer=d.get("scorer"),
            warning=d.get("warning"),
        )


def scorer_name(scorer: Any) -> str | None:
    """What a selection records as its scorer: the spec, else the class name (None: no scorer)."""
    if scorer is None:
        return None
    return getattr(scorer, "spec", "") or type(scorer).__name__


def check_scores(scores: Any, k: int) -> list[float]:
    """``scores`` as a list of ``k`` finite floats, or :class:`ScorerError`."""
    try:
        out = [float(s) for s in scores]
    except (TypeError, ValueError) as e:
        raise ScorerError(f"scorer returned something that is not a list of numbers: {e}") from e
    if len(out) != k:
        raise ScorerError(f"scorer returned {len(out)} scores for {k} candidates")
    bad = [s for s in out if not math.isfinite(s)]
    if bad:  # NaN and +-inf alike: a score must be a finite number (metadata is plain JSON)
        raise ScorerError(f"scorer returned a non-finite score ({bad[0]})")
    return out


def pick(candidates: Sequence[Candidate], scores: Sequence[float]) -> int:
    """Index of the highest score; ties go to the candidate sampled most often, then the first."""
    if not candidates:
        raise ValueError("no candidates to pick from")
    return max(range(len(candidates)), key=lambda i: (scores[i], candidates[i].count, -i))


def choose(candidates: Sequence[Candidate], rule: Rule, rng: random.Random | None = None) -> int:
    """The winner under a rule that does not score (``random``, ``majority``, ``first``)."""
    if not candidates:
        raise ValueError("no candidates to pick from")
    if rule == "random":
        weights = [c.count for c in candidates]
        return (rng or random.Random()).choices(range(len(candidates)), weights=weights, k=1)[0]
    if rule == "majority":
        return max(
            range(len(candidates)),
            key=lambda i: (candidates[i].count, candidates[i].logprob or 0.0, -i),
        )
    if rule == "first":
        return 0
    raise ValueError(f"rule {rule!r} scores; use select()")


def _merge(samples: Sequence[Candidate]) -> list[Candidate]:
    if not samples or any(not (c.text or "").strip() for c in samples):
        raise ProposerError("proposer returned no usable candidate")
    return merge_candidates(samples)


def _scorer_failed(
    e: Exception, on_error: OnError, passthrough: tuple[type[BaseException], ...]
) -> str:
    """Apply the error policy: re-raise, or return the fallback warning."""
    if passthrough and isinstance(e, passthrough):
        raise e
    if on_error == "raise":
        if isinstance(e, ScorerError):
            raise e
        raise ScorerError(f"scorer failed: {type(e).__name__}: {e}") from e
    msg = f"scorer failed ({type(e).__name__}: {e}); fell back to the first sample"
    logger.warning(msg)
    return msg


def _unscored(
    cands: list[Candidate], rule: Rule, n: int, scorer: Any, rng: random.Random | None
) -> Selection:
    index = 0 if rule == "score" else choose(cands, rule, rng)
    return Selection(cands, index, None, n, rule, scorer_name(scorer) if rule == "score" else None)


def _scored(
    cands: list[Candidate], raw: Any, n: int, scorer: Any, rule: Rule = "score"
) -> Selection:
    scores = check_scores(raw, len(cands))
    return Selection(cands, pick(cands, scores), scores, n, rule, scorer_name(scorer))


def select(
    samples: Sequence[Candidate],
    context: Context,
    scorer: Scorer | None = None,
    *,
    rule: Rule = "score",
    on_error: OnError = "raise",
    rng: random.Random | None = None,
    passthrough: tuple[type[BaseException], ...] = (),
) -> Selection:
    """Choose one of ``samples`` (raw, unmerged) for ``context`` (sync).

    ``passthrough`` names exception types that always propagate from the scorer whatever
    ``on_error`` says (LangGraph's interrupts).
    """
    cands = _merge(samples)
    n = sum(c.count for c in samples)
    if rule != "score" or len(cands) == 1:
        return _unscored(cands, rule, n, scorer, rng)
    if scorer is None:
        raise ValueError("rule 'score' needs a scorer")
    try:
        return _scored(cands, scorer.score(context, [c.text for c in cands]), n, scorer)
    except Exception as e:
        warning = _scorer_failed(e, on_error, passthrough)
    return Selection(cands, 0, None, n, rule, scorer_name(scorer), warning)


async def _ascore(scorer: Any, context: Context, actions: list[str]) -> Any:
    fn = getattr(scorer, "ascore", None)
    if fn is not None and asyncio.iscoroutinefunction(fn):
        return await fn(context, actions)
    return await asyncio.to_thread(scorer.score, context, actions)


async def aselect(
    samples: Sequence[Candidate],
    context: Context,
    scorer: Scorer | None = None,
    *,
    rule: Rule = "score",
    on_error: OnError = "raise",
    rng: random.Random | None = None,
    passthrough: tuple[type[BaseException], ...] = (),
) -> Selection:
    """Async twin of :func:`select` (``ascore``, or ``score`` in a worker thread)."""
    cands = _merge(samples)
    n = sum(c.count for c in samples)
    if rule != "score" or len(cands) == 1:
        return _unscored(cands, rule, n, scorer, rng)
    if scorer is None:
        raise ValueError("rule 'score' needs a scorer")
    try:
        raw = await _ascore(scorer, context, [c.text for c in cands])
        return _scored(cands, raw, n, scorer)
    except Exception as e:
        warning = _scorer_failed(e, on_error, passthrough)
    return Selection(cands, 0, None, n, rule, scorer_name(scorer), warning)


def select_best(
    context: Context,
    proposer: Proposer,
    scorer: Scorer | None,
    n: int,
    *,
    valid_actions: Sequence[str] | None = None,
    rule: Rule = "score",
    on_error: OnError = "raise",
    rng: random.Random | None = None,
) -> Selection:
    """Propose ``n`` candidates for ``context`` and :func:`select` one (sync)."""
    samples = proposer.propose(context, n, valid_actions=valid_actions)
    return select(samples, context, scorer, rule=rule, on_error=on_error, rng=rng)


async def aselect_best(
    context: Context,
    proposer: Proposer,
    scorer: Scorer | None,
    n: int,
    *,
    valid_actions: Sequence[str] | None = None,
    rule: Rule = "score",
    on_error: OnError = "raise",
    rng: random.Random | None = None,
) -> Selection:
    """Async twin of :func:`select_best`."""
    samples = await proposer.apropose(context, n, valid_actions=valid_actions)
    return await aselect(samples, context, scorer, rule=rule, on_error=on_error, rng=rng)


__all__ = [
    "RULES",
    "OnError",
    "Rule",
    "Selection",
    "aselect",
    "aselect_best",
    "check_scores",
    "choose",
    "pick",
    "scorer_name",
    "select",
    "select_best",
]
