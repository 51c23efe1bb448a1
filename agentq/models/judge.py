"""An LLM judge as a Scorer: a policy model prompted to grade each candidate action.

``judge:MODEL`` (any MODEL spec: ``smollm2``, a local directory, ``openai:URL#model``) builds an
:class:`LLMJudgeScorer`. For each candidate the judge sees the agent's transcript and the
candidate, and answers with one integer grade from 1 to ``scale``; the score is the mean grade
over ``samples`` answers. The grades are also passed as ``valid_actions``, so a proposer with a
constrained mode (the local one) can only answer with a grade; an answer without a number
scores 0 and is counted in :attr:`LLMJudgeScorer.unparsed`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from agentq.protocols import BaseScorer, Proposer, _run_sync
from agentq.types import Context

JUDGE_SYSTEM = (
    "You are an expert judge of AI agents. You see an agent's task and its interaction so far, "
    "then one candidate next action. Grade how likely the candidate is to lead to completing "
    "the task, from 1 (useless or wrong) to {scale} (the best possible next step). "
    "Reply with the number only."
)

_INT_RE = re.compile(r"-?\d+(?:\.\d+)?")


def transcript(context: Context, max_chars: int = 6000) -> str:
    """The context as plain text (``ROLE: content`` blocks), keeping the last ``max_chars``."""
    text = "\n\n".join(f"{str(m.get('role', '')).upper()}: {m.get('content', '')}" for m in context)
    if len(text) > max_chars:
        text = "[...]\n" + text[-max_chars:]
    return text


def parse_grade(text: str, scale: int) -> float | None:
    """The first number in ``text`` clipped to [1, scale], or None when there is none."""
    m = _INT_RE.search(text or "")
    if not m:
        return None
    return float(min(max(float(m.group(0)), 1.0), float(scale)))


class LLMJudgeScorer(BaseScorer):
    """Scores candidates by asking a policy model (any Proposer) for a 1..``scale`` grade."""

    def __init__(
        self,
        proposer: Proposer,
        *,
        scale: int = 10,
        samples: int = 1,
        max_context_chars: int = 6000,
        system_prompt: str = JUDGE_SYSTEM,
        spec: str = "",
    ) -> None:
        if scale < 2 or samples < 1:
            raise ValueError("scale must be >= 2 and samples >= 1")
        self.spec = spec
        self.proposer = proposer
        self.scale = scale
        self.samples = samples
        self.max_context_chars = max_context_chars
        self.system_prompt = system_prompt
        self.unparsed = 0
        """Answers that held no number (scored 0)."""
        self.calls = 0

    def judge_context(self, context: Context, action: str) -> Context:
        """The messages the judge model sees for one candidate."""
        return [
            {"role": "system", "content": self.system_prompt.format(scale=self.scale)},
            {
                "role": "user",
                "content": (
                    f"Interaction so far:\n{transcript(context, self.max_context_chars)}\n\n"
                    f"Candidate next action:\n{action}\n\n"
                    f"Grade (1-{self.scale}):"
                ),
            },
        ]

    async def _one(self, context: Context, action: str) -> float:
        grades = [str(i) for i in range(1, self.scale + 1)]
        cands = await self.proposer.apropose(
            self.judge_context(context, action), self.samples, valid_actions=grades
        )
        self.calls += 1
        total, weight = 0.0, 0
        for c in cands:
            g = parse_grade(c.text, self.scale)
            if g is None:
                self.unparsed += c.count
                g = 0.0
            total += g * c.count
            weight += c.count
        return total / weight if weight else 0.0

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Mean judge grade of each action (candidates judged concurrently)."""
        return list(await asyncio.gather(*(self._one(context, a) for a in actions)))

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Sync twin of :meth:`ascore`."""
        return list(_run_sync(self.ascore(context, actions)))

    def reseed(self, seed: int) -> None:
        """Reseed the judge model (its draws outside a task scope)."""
        self.proposer.reseed(seed)


def scorer_from_spec(model_spec: str, **options: Any) -> LLMJudgeScorer:
    """Build the judge of a ``judge:MODEL`` spec.

    Options: ``scale``, ``samples``, ``max_context_chars`` for the judge; ``seed`` and
    ``temperature`` (0 by default: the judge answers greedily) for the model.
    """
    from agentq.specs import resolve_policy, takes_temperature

    judge_keys = ("scale", "samples", "max_context_chars", "system_prompt")
    judge_opts = {k: options.pop(k) for k in judge_keys if k in options}
    seed = int(options.pop("seed", 0))
    temperature = float(options.pop("temperature", 0.0))
    if takes_temperature(model_spec):
        proposer = resolve_policy(model_spec, seed=seed, temperature=temperature, **options)
    else:  # the random policy: no sampling settings
        proposer = resolve_policy(model_spec, seed=seed)
    return LLMJudgeScorer(proposer, spec=f"judge:{model_spec}", **judge_opts)
