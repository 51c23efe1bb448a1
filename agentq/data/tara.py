"""TARA, the tool-augmented reward-modelling data set of Themis (Li et al., ICLR 2024).

Each TARA file is JSON Lines (despite its ``.json`` suffix): one object a line,
``{"id", "question", "pos_answer", "neg_answer"}``, each answer
``{"answer", "score", "actions", "score_agent": {"explanation", "score"}}``. ``actions`` is
either one dict ``{"Thought", "Action", "Action Input", "Observation"}`` (single-tool files) or
a multi-line ``Thought:/Action:/Action Input:/Observation:`` string (multi-tool file, where an
observation may itself span several lines). :func:`parse_actions` normalises both to a list of
:class:`TaraStep`.

:func:`pairwise_accuracy` is the figure a reward model is judged by on these files: the share
of pairs whose positive answer scores strictly above the negative one. A tie counts as wrong by
default, as Themis counts it (``generate_rm.py``: a pair is right when ``pos > neg``); the
figure with ties worth half is reported beside it as ``half_tie_accuracy``. It takes any
``Scorer`` and any pairs (TARA pairs, ``(context, chosen, rejected)`` tuples or pairs.jsonl-style
dicts).

A TARA row may carry a ``context`` (text before the question, in some of Themis' data sets);
Themis prepends it as ``Context: ...`` on the line before the question, and so does
:attr:`TaraPair.context`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentq.data.jsonl import iter_jsonl
from agentq.errors import UserInputError
from agentq.protocols import Scorer
from agentq.react import parse_react as parse_react_steps
from agentq.render import observation_text
from agentq.types import Context

#: The field names of a ReAct step, as TARA spells them.
STEP_FIELDS = ("Thought", "Action", "Action Input", "Observation")

#: The file names of the TARA test splits, by short name.
TARA_FILES = {
    "calculator": "agent_calculator_test.json",
    "calendar": "agent_calendar_test.json",
    "weather": "agent_weather_test.json",
    "multi_tools": "agent_multi_tools_test_action.json",
    "wikisearch": "agent_wikisearch_test_obs.json",
}


@dataclass
class TaraStep:
    """One ReAct step of a verification trace: thought, tool name, tool input, observation."""

    thought: str = ""
    action: str = ""
    action_input: str = ""
    observation: str | None = None
    """The tool's output; None when the trace stops before it (a step still to execute)."""

    def to_dict(self) -> dict[str, Any]:
        """TARA's dict form (``{"Thought", "Action", "Action Input", "Observation"}``)."""
        d = {"Thought": self.thought, "Action": self.action, "Action Input": self.action_input}
        if self.observation is not None:
            d["Observation"] = self.observation
        return d


@dataclass
class TaraAnswer:
    """One candidate answer of a TARA pair with its recorded verification trace and rationale."""

    answer: str
    score: float
    """The data set's label (+1 for correct; -1 or 0 for incorrect)."""
    steps: list[TaraStep] = field(default_factory=list)
    explanation: str = ""
    """The rationale (``score_agent.explanation``)."""
    agent_score: float | None = None
    """``score_agent.score`` as a float (None when missing or not a number)."""


@dataclass
class TaraPair:
    """One TARA row: a question with a preferred (``pos``) and a dispreferred (``neg``) answer."""

    id: str
    question: str
    pos: TaraAnswer
    neg: TaraAnswer
    source: str = ""
    """Short name of the file it came from (``calculator``, ``calendar``, ...)."""
    context_text: str | None = None
    """The row's ``context`` field (None when it has none)."""

    @property
    def prompt_text(self) -> str:
        """The question, with the row's context prepended as Themis does (``Context: ...``)."""
        return question_with_context(self.question, self.context_text)

    @property
    def context(self) -> Context:
        """The question (after its context, when the row has one) as one user message."""
        return [{"role": "user", "content": self.prompt_text}]

    @property
    def chosen(self) -> str:
        """The preferred answer text."""
        return self.pos.answer

    @property
    def rejected(self) -> str:
        """The dispreferred answer text."""
        return self.neg.answer


def question_with_context(question: str, context: str | None) -> str:
    """``question``, or ``Context: <context>\nQuestion: <question>`` as Themis writes a row with one."""
    if context is None or not str(context).strip():
        return question
    return f"Context: {context}\nQuestion: {question}"


def split_context(text: str) -> tuple[str | None, str]:
    """Inverse of :func:`question_with_context`: ``(context or None, question)``."""
    if text.startswith("Context: ") and "\nQuestion: " in text:
        ctx, q = text[len("Context: ") :].split("\nQuestion: ", 1)
        return ctx, q
    return None, text


def parse_actions(actions: Any) -> list[TaraStep]:
    """Normalise a TARA ``actions`` value to a list of steps.

    Accepts a dict (one step), a list of dicts (several steps), a multi-line
    ``Thought:/Action:/Action Input:/Observation:`` string (lines that start with none of the
    field names continue the previous field), an empty value (no steps). Raises ``ValueError``
    for anything else.
    """
    if actions is None or actions == "" or actions == {}:
        return []
    if isinstance(actions, dict):
        return [_step_from_dict(actions)]
    if isinstance(actions, list):
        out: list[TaraStep] = []
        for a in actions:
            out.extend(parse_actions(a))
        return out
    if isinstance(actions, str):
        return parse_react(actions)
    raise ValueError(f"actions must be a dict, a list or a string, not {type(actions).__name__}")


def _step_from_dict(d: dict[str, Any]) -> TaraStep:
    obs = d.get("Observation")
    return TaraStep(
        thought=str(d.get("Thought", "") or "").strip(),
        action=str(d.get("Action", "") or "").strip(),
        action_input=str(d.get("Action Input", "") or "").strip(),
        observation=None if obs is None else str(obs).strip(),
    )


def parse_react(text: str) -> list[TaraStep]:
    """Parse a ReAct text (``Thought:`` / ``Action:`` / ``Action Input:`` / ``Observation:``)
    with agentq's one ReAct parser (:func:`agentq.react.parse_react`).

    A new step starts at a ``Thought:`` or at a field that does not follow the step's last one;
    text before the first field is ignored; a step of empty fields is left out. Field values
    are stripped.
    """
    return [
        TaraStep(
            thought=s.thought or "",
            action=s.action or "",
            action_input=s.action_input or "",
            observation=s.observation,
        )
        for s in parse_react_steps(text)
        if not s.is_empty()
    ]


def render_react(steps: Sequence[TaraStep]) -> str:
    """The multi-line ReAct text of ``steps`` (inverse of :func:`parse_react`)."""
    lines: list[str] = []
    for s in steps:
        if s.thought:
            lines.append(f"Thought: {s.thought}")
        lines.append(f"Action: {s.action}")
        lines.append(f"Action Input: {s.action_input}")
        if s.observation is not None:
            lines.append(observation_text(s.observation))
    return "\n".join(lines)


def _to_float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _answer(d: Any, where: str) -> TaraAnswer:
    if not isinstance(d, dict):
        raise UserInputError(f"{where}: expected an object with an 'answer'")
    if "answer" not in d:
        raise UserInputError(f"{where}: missing field 'answer'")
    try:
        steps = parse_actions(d.get("actions"))
    except ValueError as e:
        raise UserInputError(f"{where}: {e}") from e
    agent = d.get("score_agent") or {}
    if not isinstance(agent, dict):
        agent = {}
    score = _to_float(d.get("score"))
    return TaraAnswer(
        answer=str(d["answer"]),
        score=score if score is not None else 0.0,
        steps=steps,
        explanation=str(agent.get("explanation", "") or ""),
        agent_score=_to_float(agent.get("score")),
    )


def source_name(path: str | Path) -> str:
    """Short name of a TARA file (``agent_calendar_test.json`` -> ``calendar``)."""
    name = Path(path).name
    for short, fname in TARA_FILES.items():
        if name == fname:
            return short
    stem = Path(path).stem
    stem = re.sub(r"^agent_", "", stem)
    return re.sub(r"_test.*$", "", stem)


def load_tara(path: str | Path, *, limit: int | None = None) -> list[TaraPair]:
    """Read one TARA file (JSON Lines) into pairs. Bad rows raise ``UserInputError`` naming them."""
    src = source_name(path)
    out: list[TaraPair] = []
    for i, row in enumerate(iter_jsonl(path)):
        where = f"{path}: row {i + 1}"
        for key in ("question", "pos_answer", "neg_answer"):
            if key not in row:
                raise UserInputError(f"{where}: missing field {key!r}")
        ctx = row.get("context")
        out.append(
            TaraPair(
                id=str(row.get("id", f"{src}_{i}")),
                question=str(row["question"]),
                pos=_answer(row["pos_answer"], f"{where} field 'pos_answer'"),
                neg=_answer(row["neg_answer"], f"{where} field 'neg_answer'"),
                source=src,
                context_text=None if ctx is None else str(ctx),
            )
        )
        if limit is not None and len(out) >= limit:
            break
    return out


def load_tara_dir(
    directory: str | Path, names: Iterable[str] | None = None
) -> dict[str, list[TaraPair]]:
    """Read the TARA files of a directory: ``{short name: pairs}`` (every ``*.json`` by default).

    ``names`` picks files by short name (``calculator``, ``calendar``, ``weather``,
    ``multi_tools``, ``wikisearch``).
    """
    d = Path(directory)
    if not d.is_dir():
        raise UserInputError(f"TARA directory not found: {d}")
    if names is not None:
        paths = []
        for n in names:
            if n not in TARA_FILES:
                raise UserInputError(f"unknown TARA file {n!r}; known: {', '.join(TARA_FILES)}")
            paths.append(d / TARA_FILES[n])
    else:
        paths = sorted(d.glob("*.json"))
    return {source_name(p): load_tara(p) for p in paths}


# -- pairwise accuracy -----------------------------------------------------------------------


@dataclass
class PairwiseResult:
    """Pairwise accuracy of a scorer over pairs, with ties counted explicitly."""

    n: int
    wins: int
    ties: int
    losses: int
    tie_credit: float = 0.0
    """What a tie is worth in :attr:`accuracy` (0: wrong, as Themis counts it)."""
    scores: list[tuple[float, float]] = field(default_factory=list)
    """(chosen score, rejected score) per pair."""
    outcomes: list[str] = field(default_factory=list)
    """``win``, ``tie`` or ``loss`` per pair, in order."""

    @property
    def accuracy(self) -> float:
        """(wins + tie_credit * ties) / n (0 when there are no pairs): the headline figure."""
        return (self.wins + self.tie_credit * self.ties) / self.n if self.n else 0.0

    @property
    def strict_accuracy(self) -> float:
        """wins / n: ties counted as wrong (Themis' accuracy)."""
        return self.wins / self.n if self.n else 0.0

    @property
    def half_tie_accuracy(self) -> float:
        """(wins + ties / 2) / n: ties counted as half (a secondary figure)."""
        return (self.wins + 0.5 * self.ties) / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (without the per-pair scores)."""
        return {
            "n": self.n,
            "wins": self.wins,
            "ties": self.ties,
            "losses": self.losses,
            "tie_credit": self.tie_credit,
            "accuracy": self.accuracy,
            "strict_accuracy": self.strict_accuracy,
            "half_tie_accuracy": self.half_tie_accuracy,
        }


def as_pair(p: Any) -> tuple[Context, str, str]:
    """``(context, chosen, rejected)`` of a pair given as a :class:`TaraPair`, a tuple, or a dict.

    Dicts may be TRL preference rows (``prompt`` messages or text, ``chosen``/``rejected`` as
    text or one assistant message each) or TARA rows (``question``, ``pos_answer``,
    ``neg_answer``).
    """
    if isinstance(p, TaraPair):
        return p.context, p.chosen, p.rejected
    if isinstance(p, tuple | list) and len(p) == 3:
        ctx, c, r = p
        return _as_context(ctx), str(c), str(r)
    if isinstance(p, dict):
        if "question" in p and "pos_answer" in p:
            q = question_with_context(str(p["question"]), p.get("context"))
            return (
                [{"role": "user", "content": q}],
                _as_text(p["pos_answer"]),
                _as_text(p["neg_answer"]),
            )
        if "chosen" in p and "rejected" in p:
            return _as_context(p.get("prompt", [])), _as_text(p["chosen"]), _as_text(p["rejected"])
    raise UserInputError(f"not a preference pair: {type(p).__name__}")


def _as_context(x: Any) -> Context:
    if isinstance(x, str):
        return [{"role": "user", "content": x}]
    return list(x)


def _as_text(x: Any) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        return str(x.get("answer", x.get("content", "")))
    if isinstance(x, list) and x and isinstance(x[-1], dict):
        return str(x[-1].get("content", ""))
    return str(x)


def pairwise_accuracy(
    scorer: Scorer,
    pairs: Sequence[Any],
    *,
    tie_credit: float = 0.0,
    batch_size: int = 16,
    eps: float = 1e-9,
    progress: bool = False,
) -> PairwiseResult:
    """Pairwise accuracy of ``scorer`` on ``pairs``: the share where chosen scores above rejected.

    Each pair is scored as one ``score(context, [chosen, rejected])`` call (through
    ``score_batch`` in batches of ``batch_size``, so batching scorers batch). Scores within
    ``eps`` of each other (or both NaN) are a tie, worth ``tie_credit`` in
    :attr:`PairwiseResult.accuracy`: 0 by default, a tie is wrong as Themis counts it (ToolComp's
    process-supervision evaluation uses 0.5); both rules are always reported. A scorer with a
    ``prepare_pairs(pairs)`` method is given the pairs first (the tool-verification scorer
    uses it to load the tool outputs TARA recorded for services that cannot run offline).
    """
    items = [as_pair(p) for p in pairs]
    prepare = getattr(scorer, "prepare_pairs", None)
    if callable(prepare):
        prepare(list(pairs))
    batch_fn = getattr(scorer, "score_batch", None)
    wins = ties = losses = 0
    scores: list[tuple[float, float]] = []
    outcomes: list[str] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="pairs", unit="pair")
    for start in range(0, len(items), max(1, batch_size)):
        chunk = items[start : start + batch_size]
        reqs = [(ctx, [c, r]) for ctx, c, r in chunk]
        if callable(batch_fn):
            out = batch_fn(reqs)
        else:
            out = [scorer.score(ctx, acts) for ctx, acts in reqs]
        for s in out:
            sc, sr = float(s[0]), float(s[1])
            scores.append((sc, sr))
            if abs(sc - sr) <= eps or (math.isnan(sc) and math.isnan(sr)):
                ties += 1
                outcomes.append("tie")
            elif sc > sr:
                wins += 1
                outcomes.append("win")
            else:
                losses += 1
                outcomes.append("loss")
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return PairwiseResult(
        n=len(items),
        wins=wins,
        ties=ties,
        losses=losses,
        tie_credit=tie_credit,
        scores=scores,
        outcomes=outcomes,
    )


__all__ = [
    "TARA_FILES",
    "PairwiseResult",
    "TaraAnswer",
    "TaraPair",
    "TaraStep",
    "as_pair",
    "load_tara",
    "load_tara_dir",
    "pairwise_accuracy",
    "parse_actions",
    "parse_react",
    "question_with_context",
    "render_react",
    "split_context",
]
