"""The selection step: propose N candidates, merge duplicates, score, validate, pick one.

This is the one place agentq chooses an action. The eval runner, the LangGraph node and the
LangChain middleware (both through :mod:`agentq.integrations.langgraph.selection`) are thin
adapters over :func:`select` / :func:`aselect` (candidates already sampled) and
:func:`select_best` / :func:`aselect_best` (propose, then select); they return a
:class:`~agentq.types.Selection` whose ``to_dict()`` is the selection metadata everywhere.
:func:`ascore` is the one way to await any scorer (``ascore``, or ``score`` in a thread).

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
from typing import Any, Literal

from agentq.errors import ProposerError, ScorerError
from agentq.policies import merge_candidates
from agentq.protocols import Proposer, Scorer
from agentq.types import Candidate, Context, Selection, join_warnings

logger = logging.getLogger(__name__)

Rule = Literal["score", "random", "majority", "first"]
OnError = Literal["raise", "fallback"]
RULES: tuple[str, ...] = ("score", "random", "majority", "first")


def scorer_name(scorer: Scorer | None) -> str | None:
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


def _merge(samples: Sequence[Candidate], allow_blank: bool) -> list[Candidate]:
    if not samples or (not allow_blank and any(not (c.text or "").strip() for c in samples)):
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


def _selection(
    samples: Sequence[Candidate],
    cands: list[Candidate],
    index: int,
    scores: list[float] | None,
    rule: Rule,
    scorer: Scorer | None,
    warning: str | None = None,
) -> Selection:
    text = cands[index].text
    return Selection(
        cands,
        index,
        scores,
        n=sum(c.count for c in samples),
        rule=rule,
        scorer=scorer_name(scorer) if rule == "score" else None,
        warning=warning,
        sample_index=next(i for i, c in enumerate(samples) if c.text == text),
    )


def _unscored(
    samples: Sequence[Candidate],
    cands: list[Candidate],
    rule: Rule,
    scorer: Scorer | None,
    rng: random.Random | None,
) -> Selection | None:
    """The selection when nothing needs scoring (None: the scorer must be asked)."""
    if rule != "score":
        return _selection(samples, cands, choose(cands, rule, rng), None, rule, scorer)
    if len(cands) == 1:
        return _selection(samples, cands, 0, None, rule, scorer)
    if scorer is None:
        raise ValueError("rule 'score' needs a scorer")
    return None


def _scored(
    samples: Sequence[Candidate], cands: list[Candidate], raw: Any, scorer: Scorer
) -> Selection:
    scores = check_scores(raw, len(cands))
    return _selection(samples, cands, pick(cands, scores), scores, "score", scorer)


def select(
    samples: Sequence[Candidate],
    context: Context,
    scorer: Scorer | None = None,
    *,
    rule: Rule = "score",
    on_error: OnError = "raise",
    rng: random.Random | None = None,
    passthrough: tuple[type[BaseException], ...] = (),
    allow_blank: bool = False,
) -> Selection:
    """Choose one of ``samples`` (raw, unmerged) for ``context`` (sync).

    ``passthrough`` names exception types that always propagate from the scorer whatever
    ``on_error`` says (LangGraph's interrupts). A blank sample is a
    :class:`~agentq.errors.ProposerError` unless ``allow_blank`` (a chat turn may be empty).
    """
    cands = _merge(samples, allow_blank)
    done = _unscored(samples, cands, rule, scorer, rng)
    if done is not None:
        return done
    assert scorer is not None
    try:
        return _scored(samples, cands, scorer.score(context, [c.text for c in cands]), scorer)
    except Exception as e:
        warning = _scorer_failed(e, on_error, passthrough)
    return _selection(samples, cands, 0, None, rule, scorer, warning)


async def ascore(scorer: Scorer, context: Context, actions: Sequence[str]) -> list[float]:
    """``scorer.ascore`` when it is a coroutine function, else ``scorer.score`` in a worker
    thread (so a sync-only scorer never blocks the event loop)."""
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
    allow_blank: bool = False,
) -> Selection:
    """Async twin of :func:`select` (``ascore``, or ``score`` in a worker thread)."""
    cands = _merge(samples, allow_blank)
    done = _unscored(samples, cands, rule, scorer, rng)
    if done is not None:
        return done
    assert scorer is not None
    try:
        raw = await ascore(scorer, context, [c.text for c in cands])
        return _scored(samples, cands, raw, scorer)
    except Exception as e:
        warning = _scorer_failed(e, on_error, passthrough)
    return _selection(samples, cands, 0, None, rule, scorer, warning)


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
    "ascore",
    "aselect",
    "aselect_best",
    "check_scores",
    "choose",
    "join_warnings",
    "pick",
    "scorer_name",
    "select",
    "select_best",
]
