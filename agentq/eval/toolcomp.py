"""ToolComp-style metrics: final-answer accuracy, rank@1, process supervision, ProcessBench F1.

Record formats (JSON array, JSON Lines or parquet; one kind per file, detected per record):

final answers
    ``{"prompt", "answer", "prediction"}`` (``pred``/``response``/``final_answer`` also read):
    accuracy under the deterministic grader (numbers equal within 10% relative, normalised
    strings, lists in any order), and optionally an LLM judge with ToolComp's three grades.
ranking (K sampled trajectories per prompt)
    ``{"prompt", "answer", "trajectories": [{"steps": [{"action", "observation"}, ...],
    "final_answer", "correct"?, "outcome_score"?, "step_scores"?}, ...]}``: rank@1, the share of
    prompts whose top-scored trajectory is correct, for outcome scoring and for step-level
    scoring aggregated by min, last and mean. Scores come from the file or from a Scorer.
process supervision (ToolComp)
    ``{"history", "preferred", "dispreferred"}``: pairwise accuracy of a Scorer.
ProcessBench
    ``{"problem", "steps", "label"}`` (label = index of the first wrong step, -1 when all are
    right): first-error F1 = harmonic mean of the accuracy on erroneous and on correct solutions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentq.errors import UserInputError
from agentq.types import Context

PRED_KEYS = ("prediction", "pred", "response", "final_answer", "output")
JUDGE_GRADES = ("correct", "partially correct", "incorrect")
"""ToolComp's three LLM-judge grades; only ``correct`` counts as accurate."""


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


def detect_kind(rec: dict[str, Any]) -> str:
    """``final_answer``, ``ranking``, ``process_pairs`` or ``processbench`` for one record."""
    if "preferred" in rec and "dispreferred" in rec:
        return "process_pairs"
    if "steps" in rec and "label" in rec:
        return "processbench"
    if isinstance(rec.get("trajectories"), list):
        return "ranking"
    if "answer" in rec and any(k in rec for k in PRED_KEYS):
        return "final_answer"
    raise UserInputError(
        "record fits no ToolComp-style format (needs preferred/dispreferred, steps/label, "
        f"trajectories, or answer + prediction); keys: {', '.join(sorted(rec))}"
    )


# -- grading -----------------------------------------------------------------------------------


def _fallback_grade(pred: Any, gold: Any) -> bool:
    """The deterministic rule, used only when the tool-use environment's grader is absent."""

    def num(x: str) -> float | None:
        try:
            return float(x.replace(",", "").replace("$", "").replace("%", "").strip())
        except ValueError:
            return None

    def norm(x: Any) -> str:
        s = re.sub(r"[^\w\s.,-]", " ", str(x).lower())
        s = re.sub(r"\b(a|an|the)\b", " ", s)
        return " ".join(s.split()).strip(" .")

    def items(x: Any) -> list[str]:
        if isinstance(x, (list, tuple)):
            return [str(i) for i in x]
        return [i for i in re.split(r"\s*(?:,|;|\band\b)\s*", str(x)) if i.strip()]

    def one(p: str, g: str) -> bool:
        a, b = num(p), num(g)
        if a is not None and b is not None:
            return abs(a - b) <= 0.1 * abs(b) if b != 0 else abs(a) < 1e-9
        return norm(p) == norm(g)

    if one(str(pred), str(gold)):
        return True
    pi, gi = items(pred), items(gold)
    if len(gi) > 1 and len(pi) == len(gi):
        left = list(pi)
        for g in gi:
            hit = next((p for p in left if one(p, g)), None)
            if hit is None:
                return False
            left.remove(hit)
        return True
    return False


def default_grader() -> Callable[[Any, Any], bool]:
    """``grade_answer(pred, gold)`` of the tool-use environment (its deterministic grader)."""
    try:
        from agentq.envs.tooluse.grading import grade_answer
    except ImportError:
        return _fallback_grade

    def grade(pred: Any, gold: Any) -> bool:
        r = grade_answer(pred, gold)
        return bool(getattr(r, "correct", r))

    return grade


def prediction_of(rec: dict[str, Any]) -> Any:
    """The predicted answer of a final-answer record."""
    for k in PRED_KEYS:
        if k in rec:
            return rec[k]
    raise UserInputError(f"record has no prediction field ({', '.join(PRED_KEYS)})")


class LLMJudgeGrader:
    """ToolComp's LLM-judge grading: ``correct``, ``partially correct`` or ``incorrect``."""

    SYSTEM = (
        "You grade answers to questions against a reference answer. Be charitable to formatting "
        "differences. Reply with exactly one of: correct, partially correct, incorrect."
    )

    def __init__(self, proposer: Any) -> None:
        self.proposer = proposer

    def grade(self, question: str, gold: Any, pred: Any) -> str:
        """One of :data:`JUDGE_GRADES` (``incorrect`` when the reply names none)."""
        ctx: Context = [
            {"role": "system", "content": self.SYSTEM},
            {
                "role": "user",
                "content": f"Question: {question}\nReference answer: {gold}\n"
                f"Answer to grade: {pred}\nGrade:",
            },
        ]
        (c, *_) = self.proposer.propose(ctx, 1, valid_actions=list(JUDGE_GRADES))
        text = c.text.lower()
        for g in ("partially correct", "incorrect", "correct"):
            if g in text:
                return g
        return "incorrect"


def final_answer_accuracy(
    records: Sequence[dict[str, Any]],
    *,
    grader: Callable[[Any, Any], bool] | None = None,
    judge: LLMJudgeGrader | None = None,
) -> dict[str, Any]:
    """Final-answer accuracy with the deterministic grader (and the judge's grades when given)."""
    grade = grader or default_grader()
    ok = [bool(grade(prediction_of(r), r["answer"])) for r in records]
    out: dict[str, Any] = {
        "kind": "final_answer",
        "n": len(records),
        "accuracy": sum(ok) / len(ok) if ok else 0.0,
    }
    if judge is not None:
        grades = [
            judge.grade(str(r.get("prompt", r.get("question", ""))), r["answer"], prediction_of(r))
            for r in records
        ]
        out["judge"] = {g: grades.count(g) for g in JUDGE_GRADES}
        out["judge_accuracy"] = grades.count("correct") / len(grades) if grades else 0.0
        out["judge_agreement"] = (
            sum((g == "correct") == o for g, o in zip(grades, ok, strict=True)) / len(ok)
            if ok
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
                val = (
                    step[key]
                    if isinstance(step[key], str)
                    else json.dumps(step[key], sort_keys=True)
                )
                parts.append(f"{label}: {val}")
        if parts:
            return "\n".join(parts)
        if "content" in step:
            return str(step["content"])
    return json.dumps(step, sort_keys=True)


def _obs_text(step: Any) -> str:
    if isinstance(step, dict):
        return str(step.get("observation", step.get("Observation", "")) or "")
    return ""


def trajectory_text(traj: dict[str, Any]) -> str:
    """A whole trajectory as one text (outcome scoring): each step, its observation, the answer."""
    lines = []
    for s in traj.get("steps", []):
        lines.append(_step_text(s))
        obs = _obs_text(s)
        if obs:
            lines.append(f"Observation: {obs}")
    if traj.get("final_answer") is not None:
        lines.append(f"Final Answer: {traj['final_answer']}")
    return "\n".join(lines)


def step_scores_of(scorer: Any, ctx: Context, traj: dict[str, Any]) -> list[float]:
    """One score per step: each step's action scored in the context of the steps before it."""
    from agentq.render import advance_context

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
    scorer: Any = None,
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


def _history_context(history: Any) -> Context:
    if isinstance(history, str):
        return [{"role": "user", "content": history}]
    if isinstance(history, list):
        if all(isinstance(m, dict) and "role" in m for m in history):
            return list(history)
        from agentq.render import advance_context

        ctx: Context = []
        for item in history:
            if isinstance(item, dict) and not ctx and ("prompt" in item or "question" in item):
                ctx = [{"role": "user", "content": str(item.get("prompt", item.get("question")))}]
                continue
            if not ctx:
                ctx = [{"role": "user", "content": _step_text(item)}]
                continue
            ctx = advance_context(ctx, _step_text(item), _obs_text(item))
        return ctx
    if isinstance(history, dict):
        return _history_context([history])
    return [{"role": "user", "content": str(history)}]


def process_pairs(records: Sequence[dict[str, Any]]) -> list[tuple[Context, str, str]]:
    """ToolComp preferred/dispreferred records as (context, chosen, rejected) pairs."""
    out = []
    for r in records:
        ctx = _history_context(r.get("history", r.get("prompt", "")))
        out.append((ctx, _step_text(r["preferred"]), _step_text(r["dispreferred"])))
    return out


def process_pairwise_accuracy(
    records: Sequence[dict[str, Any]], scorer: Any, *, progress: bool = False
) -> dict[str, Any]:
    """Pairwise accuracy of ``scorer`` on preferred vs dispreferred steps (ties count half)."""
    from agentq.data.tara import pairwise_accuracy

    res = pairwise_accuracy(scorer, process_pairs(records), progress=progress)
    return {"kind": "process_pairs", **res.to_dict()}


def first_error_prediction(scores: Sequence[float], threshold: float) -> int:
    """Index of the first step scored below ``threshold`` (-1 when none is)."""
    return next((i for i, s in enumerate(scores) if s < threshold), -1)


def processbench_f1(
    records: Sequence[dict[str, Any]], *, scorer: Any = None, threshold: float = 0.0
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
    scorer: Any = None,
    judge: LLMJudgeGrader | None = None,
    threshold: float = 0.0,
) -> dict[str, Any]:
    """The metrics of one file's records (all of one kind)."""
    if not records:
        raise UserInputError("no records to evaluate")
    kinds = {detect_kind(r) for r in records}
    if len(kinds) > 1:
        raise UserInputError(f"records of several kinds in one file: {', '.join(sorted(kinds))}")
    kind = kinds.pop()
    if kind == "final_answer":
        return final_answer_accuracy(records, judge=judge)
    if kind == "ranking":
        return rank_at_1(records, scorer=scorer)
    if kind == "process_pairs":
        if scorer is None:
            raise UserInputError("process-supervision pairs need --scorer")
        return process_pairwise_accuracy(records, scorer)
    return processbench_f1(records, scorer=scorer, threshold=threshold)


def evaluate_file(
    path: str | Path,
    *,
    scorer: str | None = None,
    judge: str | None = None,
    threshold: float = 0.0,
    limit: int = 0,
    scorer_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``agentq eval-toolcomp``: load ``path``, build the scorer / judge from specs, evaluate."""
    from agentq.specs import resolve_policy, resolve_scorer

    recs = load_records(path, limit)
    s = resolve_scorer(scorer, **(scorer_options or {})) if scorer else None
    j = LLMJudgeGrader(resolve_policy(judge)) if judge else None
    out = evaluate_records(recs, scorer=s, judge=j, threshold=threshold)
    out["file"] = str(path)
    out["scorer"] = scorer
    return out


def _pairs_of_file(path: Path, limit: int) -> list[Any]:
    from agentq.data.tara import load_tara

    recs = load_records(path, limit)
    if not recs:
        return []
    if "question" in recs[0] and "pos_answer" in recs[0]:
        return list(load_tara(path, limit=limit or None))
    if "preferred" in recs[0]:
        return list(process_pairs(recs))
    if "chosen" in recs[0] and "rejected" in recs[0]:
        return recs
    raise UserInputError(
        f"{path}: not TARA, pairs.jsonl or ToolComp preferred/dispreferred records"
    )


def eval_pairs_files(
    paths: Sequence[str | Path],
    scorer: str,
    *,
    limit: int = 0,
    scorer_options: dict[str, Any] | None = None,
    progress: bool = False,
    scorer_obj: Any = None,
) -> dict[str, Any]:
    """``agentq eval-pairs``: pairwise accuracy of one Scorer per file (directories expanded)."""
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
    s = scorer_obj if scorer_obj is not None else resolve_scorer(scorer, **(scorer_options or {}))
    results: dict[str, Any] = {}
    for f in files:
        pairs = _pairs_of_file(f, limit)
        res = pairwise_accuracy(s, pairs, progress=progress)
        results[source_name(f)] = {"file": str(f), **res.to_dict()}
    return {"scorer": scorer, "files": results}


def pairs_table(res: dict[str, Any]) -> str:
    """Markdown table of :func:`eval_pairs_files` results."""
    lines = [
        f"scorer: {res['scorer']}",
        "",
        "| file | pairs | accuracy | strict (ties wrong) | wins | ties | losses |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in res["files"].items():
        lines.append(
            f"| {name} | {r['n']} | {100 * r['accuracy']:.1f}% | {100 * r['strict_accuracy']:.1f}% | "
            f"{r['wins']} | {r['ties']} | {r['losses']} |"
        )
    return "\n".join(lines)
