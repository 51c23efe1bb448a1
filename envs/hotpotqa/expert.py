"""Scripted policies for HotPotQA: an expert that follows the gold supporting facts, and a
random ReAct-shaped baseline.

The expert reads a task's ``supporting_facts`` (``[[title, sentence index], ...]``, present in
the official distractor files and in the shipped world) and acts only through ``env.step``:
``search[title]`` for each supporting page; when the supporting sentence is not among the
sentences a search shows, ``lookup[word]`` with the word of that sentence whose lookup reaches
it soonest (repeated until it does); then ``finish[gold answer]``. It shows that every task
can be solved within the step limit from what the environment shows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from agentq.types import StepResult

_WORD = re.compile(r"[A-Za-z0-9][\w'-]*")
_TITLEISH = re.compile(r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")


def _lookup_plan(sentences: Sequence[str], target: int) -> tuple[str, int]:
    """(keyword, how many lookups) that reach ``sentences[target]`` soonest."""
    best: tuple[int, int, str] | None = None
    for word in set(_WORD.findall(sentences[target])):
        kw = word.casefold()
        hits = [i for i, s in enumerate(sentences) if kw in s.casefold()]
        rank = hits.index(target)
        key = (rank, -len(word), word)
        if best is None or key < best:
            best = key
    if best is None:
        raise ValueError(f"sentence {target} has no word to look up")
    return best[2], best[0] + 1


def expert_plan(env: Any, task_id: str) -> list[str]:
    """The expert's actions for ``task_id`` (whole turns, ``Thought: ...`` then ``Action: ...``)."""
    ex = env.question(task_id)
    facts = ex.get("supporting_facts")
    if not facts:
        raise ValueError(f"task {task_id!r} has no supporting_facts: the expert needs them")
    needed: dict[str, list[int]] = {}
    for title, idx in facts:
        needed.setdefault(str(title), []).append(int(idx))
    actions: list[str] = []
    for title, idxs in needed.items():
        actions.append(f"Thought: I need the page about {title}.\nAction: search[{title}]")
        result = env.backend.search(title)
        if not result.found:
            raise ValueError(f"supporting page {title!r} of {task_id!r} is not in the corpus")
        for idx in sorted(set(idxs)):
            if idx >= env.search_sentences and idx < len(result.sentences):
                kw, times = _lookup_plan(result.sentences, idx)
                actions.extend(
                    f"Thought: The fact I need should mention {kw}.\nAction: lookup[{kw}]"
                    for _ in range(times)
                )
    answer = ex.get("answer") or ""
    actions.append(f"Thought: I have what I need.\nAction: finish[{answer}]")
    return actions


def run_expert(env: Any, task_id: str) -> list[tuple[str, StepResult]]:
    """Run the expert on ``task_id``; the (action, result) pairs of the episode."""
    env.reset(task_id)
    out = []
    for action in expert_plan(env, task_id):
        result = env.step(action)
        out.append((action, result))
        if result.done:
            break
    return out


class RandomReActPolicy:
    """A random baseline in ReAct's action space (for measuring how easy the tasks are).

    Each turn is ``search``, ``lookup`` or ``finish`` with equal probability (``lookup`` only
    once a page was found): search a random title-ish phrase (a run of capitalised words) from
    the question and the observations so far, look up a random word of them, or finish with a
    random entity. ``answers="corpus"`` draws that entity from ``entity_names`` (the corpus
    titles); ``answers="seen"`` draws it from the title-ish phrases seen so far, plus ``yes``
    and ``no`` (a stronger guesser).
    """

    def __init__(self, entity_names: Sequence[str], seed: int = 0, answers: str = "corpus") -> None:
        if answers not in ("corpus", "seen"):
            raise ValueError("answers must be 'corpus' or 'seen'")
        self.entity_names = list(entity_names)
        self.answers = answers
        self.rng = random.Random(seed)

    def act(self, texts: Sequence[str], page_open: bool) -> str:
        """One turn, given the question and observations so far."""
        joined = " ".join(texts)
        phrases = _TITLEISH.findall(joined) or ["Wikipedia"]
        words = [w for w in _WORD.findall(joined) if len(w) > 3] or ["the"]
        kinds = ["search", "finish"] + (["lookup"] if page_open else [])
        kind = self.rng.choice(kinds)
        if kind == "search":
            return f"Action: search[{self.rng.choice(phrases)}]"
        if kind == "lookup":
            return f"Action: lookup[{self.rng.choice(words)}]"
        if self.answers == "corpus":
            guess = self.rng.choice(self.entity_names)
        else:
            guess = self.rng.choice([*phrases, "yes", "no"])
        return f"Action: finish[{guess}]"

    def run(self, env: Any, task_id: str) -> float:
        """One episode on ``task_id``; its final reward."""
        context = env.reset(task_id)
        texts = [str(context[-1]["content"])]
        reward = 0.0
        for _ in range(env.max_steps + 1):
            result = env.step(self.act(texts, env.page_title is not None))
            texts.append(result.observation)
            reward += result.reward
            if result.done:
                break
        return reward


__all__ = ["RandomReActPolicy", "expert_plan", "run_expert"]
