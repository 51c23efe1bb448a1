"""ToolComp-style metrics: final-answer accuracy, rank@1, process supervision, ProcessBench F1.

Record formats (JSON array, JSON Lines or parquet; one kind per file, detected per record):

final answers (ToolComp's ``generations.json`` shape)
    ``{"prompt", "answer", "policy_answer", "tools"}`` (``prediction``/``pred``/``response``/
    ``final_answer``/``output`` also read as the answer): graded as ToolComp's grader grades
    (CORRECT / CORRECT BUT BAD FORMATTING / INCORRECT, both correct grades counted; by rule, see
    :mod:`agentq.eval.answers`, and optionally by an LLM judge with ToolComp's criteria),
    overall and for ToolComp-Chat (two tools) and ToolComp-Enterprise (more) apart.
ranking (K sampled trajectories per prompt)
    ``{"prompt", "answer", "trajectories": [{"steps": [{"action", "observation"}, ...],
    "final_answer", "correct"?, "outcome_score"?, "step_scores"?}, ...]}``: rank@1, the share of
    prompts whose top-scored trajectory is correct, for outcome scoring and for step-level
    scoring aggregated by min, last and mean. Scores come from the file or from a Scorer.
process supervision (ToolComp's ``toolcomp_process_supervision_eval``)
    ``{"prompt", "tools", "historical_date", "history", "preferred", "dispreferred"}``: pairwise
    accuracy of a Scorer, contexts and candidates built as ToolComp's readers build them
    (:mod:`agentq.data.toolcomp`; labels never reach the scorer), ties worth half as ToolComp
    counts them, plan rows and ReAct-step rows also apart.
ProcessBench
    ``{"problem", "steps", "label"}`` (label = index of the first wrong step, -1 when all are
    right): first-error F1 = harmonic mean of the accuracy on erroneous and on correct solutions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentq.data.toolcomp import is_toolcomp_process_row, toolcomp_pair
from agentq.errors import UserInputError
from agentq.eval.answers import (
    BAD_FORMATTING,
    CORRECT,
    GRADES,
    INCORRECT,
    REL_TOL,
    extract_student_answer,
    grade_answer,
    toolcomp_grade,
)
from agentq.protocols import Proposer, Scorer
from agentq.render import advance_context, observation_text
from agentq.types import Context


def _where(source: str, row: int) -> str:
    return f"{source}: row {row}" if source else f"row {row}"


PRED_KEYS = ("policy_answer", "prediction", "pred", "response", "final_answer", "output")
"""Fields read as the predicted answer, in this order (``policy_answer`` is ToolComp's own)."""
JUDGE_GRADES = GRADES
"""ToolComp's three grades (CORRECT, CORRECT BUT BAD FORMATTING, INCORRECT); the first two count
as accurate, as ToolComp's grader counts them."""


# -- loading -----------------------------------------------------------------------------------


def load_records(path: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    """Records of a JSON array, JSON Lines or parquet file (``limit`` > 0 keeps the first ones)."""
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"file not found: {p}")
    if p.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:  # pragma: no cover - pyarrow is a dev dependency
            raise UserInputError(
                "reading parquet needs pyarrow (pip install agentq[parquet])"
            ) from e
        recs = pq.read_table(p).to_pylist()
    else:
        text = p.read_text(encoding="utf-8")
        stripped = text.lstrip()
        if stripped.startswith("["):
            try:
                recs = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserInputError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from e
        else:
            from agentq.data.jsonl import iter_jsonl

            recs = list(iter_jsonl(p))
    if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
        raise UserInputError(f"{p}: expected a list of JSON objects")
    return recs[:limit] if limit else recs


def detect_kind(rec: dict[str, Any], where: str = "") -> str:
    """``final_answer``, ``ranking``, ``process_pairs`` or ``processbench`` for one record.

    ``where`` (``file: row N``) prefixes the error raised for a record of no known kind.
    """
    if is_toolcomp_process_row(rec):
        return "process_pairs"
    if "steps" in rec and "label" in rec:
        return "processbench"
    if isinstance(rec.get("trajectories"), list):
        return "ranking"
    if "answer" in rec and any(k in rec for k in PRED_KEYS):
        return "final_answer"
    prefix = f"{where}: " if where else ""
    if "answer" in rec and "prompt" in rec:
        raise UserInputError(
            f"{prefix}missing field 'policy_answer' (a final-answer record needs the model's "
            f"answer: one of {', '.join(PRED_KEYS)})"
        )
    raise UserInputError(
        f"{prefix}record of no known kind (ToolComp process supervision: prompt, history, "
        "preferred, dispreferred; final answers: prompt, answer, policy_answer; ranking: "
        "trajectories; ProcessBench: steps, label); its fields: " + ", ".join(sorted(rec))
    )


# -- grading -----------------------------------------------------------------------------------


def default_grader() -> Callable[[Any, Any], bool]:
    """ToolComp's grading by rule: True for CORRECT and CORRECT BUT BAD FORMATTING."""
    return grade_answer


def prediction_of(rec: dict[str, Any], where: str = "") -> Any:
    """The predicted answer of a final-answer record (the first of :data:`PRED_KEYS` present)."""
    for k in PRED_KEYS:
        if k in rec:
            return rec[k]
    prefix = f"{where}: " if where else ""
    raise UserInputError(f"{prefix}missing field 'policy_answer' ({', '.join(PRED_KEYS)})")


def prompt_split(rec: dict[str, Any]) -> str:
    """ToolComp's leaderboard of a prompt: ``chat`` (2 tools), ``enterprise`` (more), else ``other``.

    ToolComp's grader splits its prompts this way: ToolComp-Chat prompts have two tools (search
    and python), ToolComp-Enterprise prompts more.
    """
    from agentq.data.toolcomp import tool_names

    n = len(tool_names(rec.get("tools")))
    return "chat" if n == 2 else "enterprise" if n > 2 else "other"


class LLMJudgeGrader:
    """ToolComp's LLM grader: CORRECT, CORRECT BUT BAD FORMATTING or INCORRECT.

    The judge sees ToolComp's three fields (Question, Correct Answer, Student Answer, the last
    taken out of a ```json {"final_answer": ...}``` wrapper as ToolComp does) under a system
    message with ToolComp's criteria (paraphrased), and answers ``Final Grade: <grade>``. With
    ``constrained=True`` (the default) the grades are passed as ``valid_actions``, so a local
    model can only answer with a grade (it skips ToolComp's reasoning); an answer naming no
    grade counts as not accurate and in :attr:`unparsed`.
    """

    SYSTEM = (
        "You grade a student's answer against the correct answer, judging both content and "
        "format. Grades:\n"
        "CORRECT: the content and the format match the correct answer; numbers are within 10% "
        "of it; lists have the same items (in the same order when the question asks for a "
        "particular order); strings hold the same information.\n"
        "CORRECT BUT BAD FORMATTING: the content matches but the format does not: natural "
        "language or extra text around the answer, numbers within 10% but written differently, "
        "the same list items wrapped or ordered differently; extra information is fine when the "
        "correct answer is there.\n"
        "INCORRECT: the content differs: a number off by more than 10%, different or wrong "
        "information.\n"
        "Only compare the student answer with the correct answer; do not work out the answer "
        "yourself. End with: Final Grade: <CORRECT / CORRECT BUT BAD FORMATTING / INCORRECT>"
    )

    def __init__(self, proposer: Proposer, *, constrained: bool = True) -> None:
        self.proposer = proposer
        self.constrained = constrained
        self.unparsed = 0
        """Judge answers that named no grade."""

    def messages(self, question: str, gold: Any, pred: Any) -> Context:
        """The judge's prompt for one answer."""
        return [
            {"role": "system", "content": self.SYSTEM},
            {
                "role": "user",
                "content": f"Question: {question}\nCorrect Answer: {gold}\n"
                f"Student Answer: {extract_student_answer(pred)}",
            },
        ]

    @staticmethod
    def parse(text: str) -> str | None:
        """The grade named in a judge answer (after its last ``Final Grade:``), or None."""
        t = text.upper()
        if "FINAL GRADE:" in t:
            t = t.rsplit("FINAL GRADE:", 1)[1]
        for g in (BAD_FORMATTING, INCORRECT, CORRECT):
            if g in t:
                return g
        return None

    def grade(self, question: str, gold: Any, pred: Any) -> str:
        """One of :data:`JUDGE_GRADES`, or ``unparsed`` when the answer names none."""
        valid = list(JUDGE_GRADES) if self.constrained else None
        (c, *_) = self.proposer.propose(self.messages(question, gold, pred), 1, valid_actions=valid)
        g = self.parse(c.text)
        if g is None:
            self.unparsed += 1
            return "unparsed"
        return g


def grade_counts(grades: Sequence[str]) -> dict[str, Any]:
    """ToolComp's metrics of a list of grades: counts, accuracy (both correct grades) and CI.

    ``ci`` is ToolComp's 95% half-width, 1.96 * sqrt(acc * (1 - acc) / n).
    """
    n = len(grades)
    ok = sum(g in (CORRECT, BAD_FORMATTING) for g in grades)
    acc = ok / n if n else 0.0
    out: dict[str, Any] = {
        "n": n,
        "correct": grades.count(CORRECT),
        "correct_but_bad_formatting": grades.count(BAD_FORMATTING),
        "incorrect": grades.count(INCORRECT),
        "accuracy": acc,
        "ci": 1.96 * math.sqrt(acc * (1 - acc) / n) if n else 0.0,
    }
    if "unparsed" in grades:
        out["unparsed"] = grades.count("unparsed")
    return out


def _by_split(records: Sequence[dict[str, Any]], grades: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ("chat", "enterprise", "other"):
        gs = [g for r, g in zip(records, grades, strict=True) if prompt_split(r) == split]
        if gs:
            out[split] = grade_counts(gs)
    return out


def final_answer_accuracy(
    records: Sequence[dict[str, Any]],
    *,
    grader: Callable[[Any, Any], bool] | None = None,
    judge: LLMJudgeGrader | None = None,
    rel_tol: float = REL_TOL,
    source: str = "",
) -> dict[str, Any]:
    """Final-answer accuracy as ToolComp's grader counts it, overall and for chat / enterprise.

    The rule-based grades (:func:`agentq.eval.answers.toolcomp_grade`) are always computed
    (``accuracy``, ``grades``, ``splits``); ``judge`` adds the LLM grader's (``judge``,
    ``judge_splits``, ``judge_agreement`` = share of records where both agree on accurate or
    not). A custom ``grader`` (pred, gold) -> bool replaces the rule-based grades with
    CORRECT / INCORRECT.
    """
    preds = [prediction_of(r, _where(source, i + 1)) for i, r in enumerate(records)]
    if grader is None:
        grades = [
            toolcomp_grade(p, r["answer"], rel_tol) for p, r in zip(preds, records, strict=True)
        ]
    else:
        grades = [
            CORRECT if grader(p, r["answer"]) else INCORRECT
            for p, r in zip(preds, records, strict=True)
        ]
    summary = grade_counts(grades)
    out: dict[str, Any] = {
        "kind": "final_answer",
        "n": len(records),
        "accuracy": summary["accuracy"],
        "grades": {k: summary[k] for k in ("correct", "correct_but_bad_formatting", "incorrect")},
        "ci": summary["ci"],
        "splits": _by_split(records, grades),
        "grader": "rules" if grader is None else "custom",
    }
    if judge is not None:
        jgrades = [
            judge.grade(str(r.get("prompt", r.get("question", ""))), r["answer"], p)
            for r, p in zip(records, preds, strict=True)
        ]
        js = grade_counts(jgrades)
        out["judge"] = js
        out["judge_accuracy"] = js["accuracy"]
        out["judge_splits"] = _by_split(records, jgrades)
        ok_rule = [g != INCORRECT for g in grades]
        ok_judge = [g in (CORRECT, BAD_FORMATTING) for g in jgrades]
        out["judge_agreement"] = (
            sum(a == b for a, b in zip(ok_rule, ok_judge, strict=True)) / len(grades)
            if grades
            else 0.0
        )
    return out


# -- ranking -------------------------------------------------------------------------------------

AGGREGATIONS = ("min", "last", "mean")


def _prompt_context(rec: dict[str, Any]) -> Context:
    p = rec.get("prompt", rec.get("question", ""))
    if isinstance(p, list):
        return list(p)
    return [{"role": "user", "content": str(p)}]


def _value_text(v: Any) -> str:
    """A step field as text: a ToolComp ``{"text", "label"}`` struct gives its text only."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        if "text" in v:
            return "" if v["text"] is None else str(v["text"])
        return json.dumps({k: x for k, x in v.items() if k != "label"}, sort_keys=True)
    return json.dumps(v, sort_keys=True)


def _step_text(step: Any) -> str:
    if isinstance(step, str):
        return step
    if isinstance(step, dict):
        if isinstance(step.get("action"), str) and set(step) <= {"action", "observation", "reward"}:
            return step["action"]
        parts = []
        for key in ("thought", "Thought", "action", "Action", "action_input", "Action Input"):
            if key in step and step[key] not in (None, ""):
                label = key.replace("_", " ").title()
                parts.append(f"{label}: {_value_text(step[key])}")
        if parts:
            return "\n".join(parts)
        if "content" in step:
            return str(step["content"])
        return _value_text(step)
    return str(step)


def _obs_text(step: Any) -> str:
    if isinstance(step, dict):
        v = step.get("observation", step.get("Observation"))
        return "" if v is None else _value_text(v)
    return ""


def trajectory_text(traj: dict[str, Any]) -> str:
    """A whole trajectory as one text (outcome scoring): each step, its observation, the answer."""
    lines = []
    for s in traj.get("steps", []):
        lines.append(_step_text(s))
        obs = _obs_text(s)
        if obs:
            lines.append(observation_text(obs))
    if traj.get("final_answer") is not None:
        lines.append(f"Final Answer: {traj['final_answer']}")
    return "\n".join(lines)


def step_scores_of(scorer: Scorer, ctx: Context, traj: dict[str, Any]) -> list[float]:
    """One score per step: each step's action scored in the context of the steps before it."""
    out = []
    context = list(ctx)
    for s in traj.get("steps", []):
        a = _step_text(s)
        out.append(float(scorer.score(context, [a])[0]))
        context = advance_context(context, a, _obs_text(s))
    return out


def _aggregate(scores: Sequence[float], how: str) -> float:
    if not scores:
        return -math.inf
    if how == "min":
        return min(scores)
    if how == "last":
        return scores[-1]
    return sum(scores) / len(scores)


def rank_at_1(
    records: Sequence[dict[str, Any]],
    *,
    scorer: Scorer | None = None,
    grader: Callable[[Any, Any], bool] | None = None,
) -> dict[str, Any]:
    """rank@1 for outcome scoring and for step scores aggregated by min, last and mean.

    A trajectory is correct by its ``correct`` field, else by grading ``final_answer`` against
    the record's ``answer``. Scores come from the file (``outcome_score``, ``step_scores``)
    or, where missing, from ``scorer``. Ties go to the first trajectory. ``oracle`` is the share
    of prompts with any correct trajectory, ``random`` the expected rank@1 of a random pick.
    """
    grade = grader or default_grader()
    hits: dict[str, list[float]] = {"outcome": [], **{f"step-{a}": [] for a in AGGREGATIONS}}
    oracle, rand = [], []
    for r in records:
        trajs = r["trajectories"]
        if not trajs:
            continue
        ctx = _prompt_context(r)
        correct = [
            bool(t["correct"])
            if "correct" in t
            else bool(grade(t.get("final_answer"), r.get("answer")))
            for t in trajs
        ]
        oracle.append(float(any(correct)))
        rand.append(sum(correct) / len(correct))
        outcome = [t.get("outcome_score") for t in trajs]
        if any(o is None for o in outcome) and scorer is not None:
            computed = scorer.score(ctx, [trajectory_text(t) for t in trajs])
            outcome = [
                o if o is not None else float(c) for o, c in zip(outcome, computed, strict=True)
            ]
        if all(o is not None for o in outcome):
            best = max(range(len(trajs)), key=lambda i: (outcome[i], -i))
            hits["outcome"].append(float(correct[best]))
        steps = []
        for t in trajs:
            s = t.get("step_scores")
            if s is None and scorer is not None:
                s = step_scores_of(scorer, ctx, t)
            steps.append(s)
        if all(s is not None for s in steps):
            for a in AGGREGATIONS:
                agg = [_aggregate(s, a) for s in steps]  # type: ignore[arg-type]
                best = max(range(len(trajs)), key=lambda i: (agg[i], -i))
                hits[f"step-{a}"].append(float(correct[best]))
    out: dict[str, Any] = {
        "kind": "ranking",
        "n": len(oracle),
        "oracle": sum(oracle) / len(oracle) if oracle else 0.0,
        "random": sum(rand) / len(rand) if rand else 0.0,
    }
    for k, v in hits.items():
        out[f"rank@1/{k}"] = (sum(v) / len(v)) if v else None
    return out


# -- process supervision ---------------------------------------------------------------------------


def process_pairs(
    records: Sequence[dict[str, Any]], *, source: str = "", candidate_observation: bool = True
) -> list[Any]:
    """ToolComp process-supervision rows as :class:`~agentq.data.toolcomp.ToolCompPair` objects.

    Contexts and candidates are built as ToolComp's readers build them (see
    :mod:`agentq.data.toolcomp`); no label or gold field reaches them.
    """
    return [
        toolcomp_pair(r, source=source, index=i + 1, candidate_observation=candidate_observation)
        for i, r in enumerate(records)
    ]


TOOLCOMP_TIE_CREDIT = 0.5
"""ToolComp's process-supervision evaluation scores a tie as 0.5 (``_score_pair``)."""


def process_pairwise_accuracy(
    records: Sequence[dict[str, Any]],
    scorer: Scorer,
    *,
    progress: bool = False,
    source: str = "",
    candidate_observation: bool = True,
    tie_credit: float = TOOLCOMP_TIE_CREDIT,
) -> dict[str, Any]:
    """Pairwise accuracy on ToolComp's preferred vs dispreferred steps, as ToolComp reports it.

    ``accuracy`` counts a tie as ``tie_credit`` (0.5, as ToolComp does); ``strict_accuracy``
    counts it as wrong. ``plan`` and ``react`` give the same for action-plan rows and ReAct-step
    rows (ToolComp's ``action_plan_only_accuracy`` and ``react_steps_accuracy``).
    """
    from agentq.data.tara import pairwise_accuracy

    pairs = process_pairs(records, source=source, candidate_observation=candidate_observation)
    res = pairwise_accuracy(
        scorer, [p.as_tuple() for p in pairs], progress=progress, tie_credit=tie_credit
    )
    out: dict[str, Any] = {"kind": "process_pairs", **res.to_dict()}
    for name, want in (("plan", True), ("react", False)):
        idx = [i for i, p in enumerate(pairs) if p.is_plan is want]
        wins = sum(res.outcomes[i] == "win" for i in idx)
        ties = sum(res.outcomes[i] == "tie" for i in idx)
        out[name] = {
            "n": len(idx),
            "accuracy": (wins + tie_credit * ties) / len(idx) if idx else None,
            "strict_accuracy": wins / len(idx) if idx else None,
            "wins": wins,
            "ties": ties,
        }
    out["candidate_observation"] = candidate_observation
    return out


def first_error_prediction(scores: Sequence[float], threshold: float) -> int:
    """Index of the first step scored below ``threshold`` (-1 when none is)."""
    return next((i for i, s in enumerate(scores) if s < threshold), -1)


def processbench_f1(
    records: Sequence[dict[str, Any]], *, scorer: Scorer | None = None, threshold: float = 0.0
) -> dict[str, Any]:
    """ProcessBench first-error F1 from step scores (from the file's ``step_scores`` or ``scorer``).

    Step i is scored in a context holding the problem and the steps before it as one assistant
    message.
    """
    err_hits: list[float] = []
    ok_hits: list[float] = []
    for r in records:
        steps = [str(s) for s in r["steps"]]
        scores = r.get("step_scores")
        if scores is None:
            if scorer is None:
                raise UserInputError("ProcessBench records without step_scores need --scorer")
            scores = []
            for i, s in enumerate(steps):
                ctx: Context = [
                    {"role": "user", "content": str(r.get("problem", r.get("question", "")))}
                ]
                if i:
                    ctx.append({"role": "assistant", "content": "\n\n".join(steps[:i])})
                scores.append(float(scorer.score(ctx, [s])[0]))
        pred = first_error_prediction(scores, threshold)
        label = int(r["label"])
        (err_hits if label >= 0 else ok_hits).append(float(pred == label))
    a_err = sum(err_hits) / len(err_hits) if err_hits else 0.0
    a_ok = sum(ok_hits) / len(ok_hits) if ok_hits else 0.0
    f1 = 2 * a_err * a_ok / (a_err + a_ok) if (a_err + a_ok) else 0.0
    return {
        "kind": "processbench",
        "n": len(records),
        "erroneous": len(err_hits),
        "correct": len(ok_hits),
        "acc_erroneous": a_err,
        "acc_correct": a_ok,
        "f1": f1,
        "threshold": threshold,
    }


# -- drivers -------------------------------------------------------------------------------------


def evaluate_records(
    records: Sequence[dict[str, Any]],
    *,
    scorer: Scorer | None = None,
    judge: LLMJudgeGrader | None = None,
    threshold: float = 0.0,
    source: str = "",
    candidate_observation: bool = True,
) -> dict[str, Any]:
    """The metrics of one file's records (all of one kind); ``source`` names the file in errors."""
    if not records:
        raise UserInputError(f"{source}: no records to evaluate" if source else "no records")
    kinds = {detect_kind(r, _where(source, i + 1)) for i, r in enumerate(records)}
    if len(kinds) > 1:
        raise UserInputError(
            f"{source or 'file'}: records of several kinds in one file: {', '.join(sorted(kinds))}"
        )
    kind = kinds.pop()
    if kind == "final_answer":
        return final_answer_accuracy(records, judge=judge, source=source)
    if kind == "ranking":
        return rank_at_1(records, scorer=scorer)
    if kind == "process_pairs":
        if scorer is None:
            raise UserInputError("process-supervision pairs need --scorer")
        return process_pairwise_accuracy(
            records, scorer, source=source, candidate_observation=candidate_observation
        )
    return processbench_f1(records, scorer=scorer, threshold=threshold)


def evaluate_file(
    path: str | Path,
    *,
    scorer: str | None = None,
    judge: str | None = None,
    threshold: float = 0.0,
    limit: int = 0,
    scorer_options: dict[str, Any] | None = None,
    candidate_observation: bool = True,
) -> dict[str, Any]:
    """``agentq eval-toolcomp``: load ``path``, build the scorer / judge from specs, evaluate.

    The records are checked (kinds, fields) before any model is built, so a bad file fails at
    once with one line naming the file, the row and the field.
    """
    from agentq.specs import resolve_policy, resolve_scorer

    recs = load_records(path, limit)
    src = str(path)
    if not recs:
        raise UserInputError(f"{src}: no records to evaluate")
    kinds = {detect_kind(r, _where(src, i + 1)) for i, r in enumerate(recs)}
    if kinds == {"process_pairs"}:
        process_pairs(recs, source=src)  # validates every row
    elif kinds == {"final_answer"}:
        for i, r in enumerate(recs):
            prediction_of(r, _where(src, i + 1))
    s = resolve_scorer(scorer, **(scorer_options or {})) if scorer else None
    j = LLMJudgeGrader(resolve_policy(judge)) if judge else None
    out = evaluate_records(
        recs,
        scorer=s,
        judge=j,
        threshold=threshold,
        source=src,
        candidate_observation=candidate_observation,
    )
    out["file"] = src
    out["scorer"] = scorer
    return out


def _pairs_of_file(
    path: Path, limit: int, candidate_observation: bool = True
) -> tuple[str, list[Any]]:
    """``(kind, pairs)`` of a pair file: ``tara``, ``toolcomp`` or ``pairs``."""
    from agentq.data.tara import load_tara

    recs = load_records(path, limit)
    if not recs:
        raise UserInputError(f"{path}: no records")
    first = recs[0]
    if "question" in first and ("pos_answer" in first or "neg_answer" in first):
        return "tara", list(load_tara(path, limit=limit or None))
    if is_toolcomp_process_row(first):
        pairs = process_pairs(recs, source=str(path), candidate_observation=candidate_observation)
        return "toolcomp", [p.as_tuple() for p in pairs]
    if "chosen" in first and "rejected" in first:
        return "pairs", recs
    raise UserInputError(
        f"{path}: row 1: not a TARA row (question, pos_answer, neg_answer), a ToolComp "
        "process-supervision row (prompt, history, preferred, dispreferred) or a pairs.jsonl row "
        "(prompt, chosen, rejected); its fields: " + ", ".join(sorted(first))
    )


HEADLINE_TIE_CREDIT = {"tara": 0.0, "toolcomp": 0.5, "pairs": 0.0}
"""How each file kind's upstream counts a tie: Themis (TARA) as wrong, ToolComp as half."""


def eval_pairs_files(
    paths: Sequence[str | Path],
    scorer: str,
    *,
    limit: int = 0,
    scorer_options: dict[str, Any] | None = None,
    progress: bool = False,
    scorer_obj: Any = None,
    candidate_observation: bool = True,
) -> dict[str, Any]:
    """``agentq eval-pairs``: pairwise accuracy of one Scorer per file (directories expanded).

    Each file's ``accuracy`` counts ties as its upstream does (:data:`HEADLINE_TIE_CREDIT`:
    wrong for TARA, as Themis; half for ToolComp); ``strict_accuracy`` (ties wrong) and
    ``half_tie_accuracy`` are both reported too. Every file is read and checked before the
    scorer is built.
    """
    from agentq.data.tara import pairwise_accuracy, source_name
    from agentq.specs import resolve_scorer

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.json")) + sorted(p.glob("*.jsonl")))
        elif p.exists():
            files.append(p)
        else:
            raise UserInputError(f"file not found: {p}")
    if not files:
        raise UserInputError("no pair files found")
    loaded = [(f, *_pairs_of_file(f, limit, candidate_observation)) for f in files]
    for f, _kind, pairs in loaded:
        if not pairs:
            raise UserInputError(f"{f} holds no pairs")
    s = scorer_obj if scorer_obj is not None else resolve_scorer(scorer, **(scorer_options or {}))
    results: dict[str, Any] = {}
    for f, kind, pairs in loaded:
        res = pairwise_accuracy(s, pairs, progress=progress, tie_credit=HEADLINE_TIE_CREDIT[kind])
        results[source_name(f)] = {"file": str(f), "format": kind, **res.to_dict()}
    return {"scorer": scorer, "files": results}


def pairs_table(res: dict[str, Any]) -> str:
    """Markdown table of :func:`eval_pairs_files` results (the headline first, then both tie rules)."""
    lines = [
        f"scorer: {res['scorer']}",
        "",
        "| file | pairs | accuracy | ties counted | ties wrong | ties half | wins | ties | losses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["files"].items():
        rule = "wrong" if r["tie_credit"] == 0 else f"{r['tie_credit']:g}"
        lines.append(
            f"| {name} | {r['n']} | {100 * r['accuracy']:.1f}% | {rule} | "
            f"{100 * r['strict_accuracy']:.1f}% | {100 * r['half_tie_accuracy']:.1f}% | "
            f"{r['wins']} | {r['ties']} | {r['losses']} |"
        )
    lines.append("")
    lines.append(
        "accuracy counts ties as the file's upstream does: wrong for TARA (Themis), half for "
        "ToolComp process supervision."
    )
    return "\n".join(lines)
