"""The one selection step (agentq.search.selection): rules, score checks, error policy."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from agentq.errors import ProposerError, ScorerError
from agentq.protocols import BaseProposer, BaseScorer
from agentq.search.selection import (
    Selection,
    aselect,
    aselect_best,
    choose,
    pick,
    select,
    select_best,
)
from agentq.types import Candidate, Step, Trajectory

CTX = [{"role": "user", "content": "go"}]


class Fixed(BaseScorer):
    spec = "fixed"

    def __init__(self, values):
        self.values = values
        self.calls = 0

    def score(self, context, actions):
        self.calls += 1
        v = self.values
        return v(actions) if callable(v) else list(v)


def samples(*texts):
    return [Candidate(t) for t in texts]


def test_majority_and_random_rules():
    cands = [Candidate("a", count=1, logprob=-1), Candidate("b", count=3), Candidate("c", count=1)]
    assert choose(cands, "majority") == 1
    picks = [choose(cands, "random", random.Random(s)) for s in range(400)]
    share_b = picks.count(1) / len(picks)
    assert 0.45 < share_b < 0.75  # weighted by count (3 of 5 samples)
    assert pick(cands, [0.1, 0.2, 0.9]) == 2
    assert choose(cands, "first") == 0


def test_merges_duplicates_keeps_counts_and_scores_each_text_once():
    scorer = Fixed(lambda acts: [{"a": 0.1, "b": 0.7, "c": 0.2}[a] for a in acts])
    sel = select(samples("a", "b", "a", "c", "b"), CTX, scorer)
    assert sel.texts == ["a", "b", "c"] and sel.counts == [2, 2, 1]
    assert sel.action == "b" and sel.scores == [0.1, 0.7, 0.2] and sel.n == 5
    assert scorer.calls == 1
    d = sel.to_dict()
    assert d["candidates"][0] == {"text": "a", "count": 2, "logprob": None}
    assert d["scorer"] == "fixed" and d["index"] == 1 and d["warning"] is None
    assert Selection.from_dict(d).to_dict() == d


def test_ties_go_to_the_most_sampled_then_the_first():
    sel = select(samples("a", "b", "b"), CTX, Fixed([1.0, 1.0]))
    assert sel.action == "b"
    sel = select(samples("a", "b"), CTX, Fixed([1.0, 1.0]))
    assert sel.action == "a"


def test_one_distinct_candidate_is_not_scored():
    scorer = Fixed([0.5])
    sel = select(samples("x", "x", "x"), CTX, scorer)
    assert sel.scores is None and sel.counts == [3] and scorer.calls == 0
    assert sel.to_dict()["scores"] is None


def test_non_scoring_rules_never_call_the_scorer():
    scorer = Fixed([0.0, 0.0])
    for rule in ("random", "majority", "first"):
        sel = select(samples("a", "b"), CTX, scorer, rule=rule, rng=random.Random(0))
        assert sel.scores is None and sel.rule == rule and sel.scorer is None
    assert scorer.calls == 0


@pytest.mark.parametrize(
    "bad, why",
    [([0.1], "1 scores for 2"), ([0.1, math.nan], "non-finite"), ([math.inf, 0], "non-finite")],
)
def test_bad_scores_raise_or_fall_back(bad, why):
    with pytest.raises(ScorerError, match=why):
        select(samples("a", "b"), CTX, Fixed(bad))
    sel = select(samples("a", "b"), CTX, Fixed(bad), on_error="fallback")
    assert sel.index == 0 and sel.scores is None and why in sel.warning


def test_scorer_exception_is_wrapped_and_passthrough_types_propagate():
    class Down(BaseScorer):
        def score(self, context, actions):
            raise ConnectionError("down")

    with pytest.raises(ScorerError, match="ConnectionError: down"):
        select(samples("a", "b"), CTX, Down())

    class Interrupt(Exception):
        pass

    class Asks(BaseScorer):
        def score(self, context, actions):
            raise Interrupt("approve?")

    with pytest.raises(Interrupt):
        select(samples("a", "b"), CTX, Asks(), on_error="fallback", passthrough=(Interrupt,))


def test_empty_or_blank_samples_are_a_proposer_error():
    with pytest.raises(ProposerError):
        select([], CTX, Fixed([]))
    with pytest.raises(ProposerError):
        select(samples("a", "  "), CTX, Fixed([0, 0]))


def test_async_twin_and_propose_then_select_agree():
    class Prop(BaseProposer):
        def propose(self, context, n, *, valid_actions=None):
            return samples(*["a", "b", "c", "b"][:n])

    scorer = Fixed(lambda acts: [len(a) + (a == "c") for a in acts])
    s1 = select_best(CTX, Prop(), scorer, 4)
    s2 = asyncio.run(aselect_best(CTX, Prop(), scorer, 4))
    s3 = asyncio.run(aselect(Prop().propose(CTX, 4), CTX, scorer))
    assert s1.to_dict() == s2.to_dict() == s3.to_dict() and s1.action == "c"


def test_step_reads_the_older_candidates_scores_form():
    old = {
        "task_id": "t",
        "context": CTX,
        "steps": [
            {
                "action": "b",
                "observation": "o",
                "reward": 0.0,
                "done": False,
                "info": {"chosen": 1},
                "candidates": ["a", "b"],
                "scores": [0.0, 1.0],
            }
        ],
    }
    t = Trajectory.from_dict(old)
    step = t.steps[0]
    assert step.candidates == ["a", "b"] and step.scores == [0.0, 1.0] and step.counts == [1, 1]
    assert Trajectory.from_dict(t.to_dict()).steps[0] == step
    assert Step(action="x", observation="", reward=0, done=True).candidates is None
