"""ToolComp-faithful evaluation: readers, no label leakage, the grader, the judge, TARA counting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentq.cli import app
from agentq.data.tara import load_tara, pairwise_accuracy
from agentq.data.toolcomp import toolcomp_pair
from agentq.errors import UserInputError
from agentq.eval import toolcomp as tc
from agentq.eval.answers import (
    BAD_FORMATTING,
    CORRECT,
    INCORRECT,
    OrderedList,
    grade_answer,
    parse_answer,
    toolcomp_grade,
)
from agentq.protocols import BaseProposer, BaseScorer
from agentq.types import Candidate

TARA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tara"
GOLD_FINAL = "GOLD-FINAL-ANSWER-7781"

# -- rows in the shapes of the dataset card ---------------------------------------------------


def _f(text: str | None, label: int | None = None) -> dict[str, Any] | None:
    """One ``{text, label}`` struct as the dataset stores a step field."""
    if text is None:
        return None
    return {"text": text} if label is None else {"label": label, "text": text}


def _step(
    plan: str | None = None,
    thought: str | None = None,
    action: str | None = None,
    action_input: str | None = None,
    observation: str | None = None,
    label: int | None = None,
    plan_label: int | None = None,
) -> dict[str, Any]:
    """A step with every field of the card's struct (absent fields null, as parquet gives them)."""
    return {
        "action": _f(action, label),
        "action plan": _f(plan, plan_label),
        "action_input": _f(action_input, label),
        "observation": _f(observation, label),
        "thought": _f(thought, label),
    }


def ps_rows() -> list[dict[str, Any]]:
    """A plan row and a ReAct row of ToolComp's process-supervision set (card's fields)."""
    plan = _step(plan="1. Search the weather in Paris.\n2. Convert to Celsius.")
    hist = [
        plan,
        _step(
            thought="Look up the weather.",
            action="google_search",
            action_input='{"query": "Paris weather"}',
            observation="Paris: 68 F, sunny",
            label=1,
        ),
    ]
    return [
        {
            "prompt": "What is the temperature in Paris in Celsius?",
            "tools": "['google_search', 'python_interpreter']",
            "historical_date": "",
            "final_answer": GOLD_FINAL,
            "history": json.dumps([]),
            # the card: a preferred plan has only text, a dispreferred plan also a label
            "preferred": _step(plan="1. Search the weather.\n2. Convert it."),
            "dispreferred": _step(plan="1. Guess.", plan_label=0),
        },
        {
            "prompt": "What is the temperature in Paris in Celsius?",
            "tools": "['google_search', 'python_interpreter', 'calculator']",
            "historical_date": "09/10/2024",
            "final_answer": GOLD_FINAL,
            "history": json.dumps(hist),
            "preferred": _step(
                thought="Convert 68 F.",
                action="calculator",
                action_input='{"operation": "(68 - 32) * 5 / 9"}',
                observation="20.0",
                label=1,
            ),
            "dispreferred": _step(
                thought="Answer now.",
                action="finish",
                action_input='{"answer": "[68]"}',
                observation="[68]",
                label=0,
            ),
        },
    ]


def _write(rows: list[dict[str, Any]], path: Path) -> Path:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class RecordingScorer(BaseScorer):
    """Scores by length and remembers every text it was given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, context, actions):
        self.seen.extend(str(m.get("content", "")) for m in context)
        self.seen.extend(actions)
        return [float(len(a)) for a in actions]


# -- the reader and the leak test ------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_no_label_or_gold_reaches_the_scorer(tmp_path: Path, suffix: str) -> None:
    path = _write(ps_rows(), tmp_path / f"ps{suffix}")
    scorer = RecordingScorer()
    recs = tc.load_records(path)
    res = tc.evaluate_records(recs, scorer=scorer, source=str(path))
    assert res["kind"] == "process_pairs" and res["n"] == 2
    assert scorer.seen, "the scorer saw nothing"
    for text in scorer.seen:
        assert "label" not in text.lower(), text
        assert GOLD_FINAL not in text, text
        assert "'text'" not in text and '"text"' not in text, text


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_contexts_built_as_toolcomp_builds_them(tmp_path: Path, suffix: str) -> None:
    path = _write(ps_rows(), tmp_path / f"ps{suffix}")
    recs = tc.load_records(path)
    plan, react = tc.process_pairs(recs, source=str(path))
    # plan row: the planning prompt (date, functions, question) and the plan texts only
    assert plan.is_plan and plan.chosen == "1. Search the weather.\n2. Convert it."
    assert plan.rejected == "1. Guess."
    sys_msg = plan.context[0]["content"]
    assert plan.context[0]["role"] == "system" and "Tuesday, September 03, 2024" in sys_msg
    assert '"name": "google_search"' in sys_msg and '"name": "finish"' in sys_msg
    assert "What is the temperature in Paris" in sys_msg
    assert plan.context[1] == {
        "role": "user",
        "content": "Question: What is the temperature in Paris in Celsius?",
    }
    # react row: system + one user message with Question / Action Plan / History
    assert not react.is_plan and react.tools == (
        "google_search",
        "python_interpreter",
        "calculator",
    )
    assert "09/10/2024" in react.context[0]["content"]
    assert '"operation"' in react.context[0]["content"]  # the calculator's parameter
    user = react.context[1]["content"]
    assert user.startswith(
        "Question: What is the temperature in Paris in Celsius?\n\nAction Plan: 1."
    )
    assert "\n\nHistory: Thought: Look up the weather.\nAction: google_search\n" in user
    assert 'Action Input: {"query": "Paris weather"}\nEnd Action\nObservation: Paris: 68 F' in user
    assert react.chosen == (
        'Thought: Convert 68 F.\nAction: calculator\nAction Input: {"operation": "(68 - 32) * 5 / 9"}'
        "\nEnd Action\nObservation: 20.0"
    )
    # a departure: the step without its observation
    bare = tc.process_pairs(recs, candidate_observation=False)[1]
    assert bare.chosen.endswith("End Action") and "Observation" not in bare.rejected


def test_process_accuracy_counts_ties_half_and_splits_plan_rows(tmp_path: Path) -> None:
    class Const(BaseScorer):
        def score(self, context, actions):
            return [1.0 for _ in actions]

    rows = ps_rows()
    res = tc.evaluate_records(rows, scorer=Const())
    assert res["ties"] == 2 and res["accuracy"] == 0.5 and res["strict_accuracy"] == 0.0
    long = tc.evaluate_records(rows, scorer=RecordingScorer())  # longer candidate wins
    assert long["plan"] == {"n": 1, "accuracy": 1.0, "strict_accuracy": 1.0, "wins": 1, "ties": 0}
    assert long["react"]["n"] == 1 and long["react"]["accuracy"] == 1.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("history"), "row 2: missing field 'history'"),
        (lambda r: r.update(history="[not json"), "row 2: field 'history' is not valid JSON"),
        (lambda r: r.update(preferred=7), "row 2: field 'preferred' must be a step object"),
        (
            lambda r: r.update(history=json.dumps([{"thought": {"text": "x"}}])),
            "row 2: field 'history[0].action plan' missing",
        ),
    ],
)
def test_bad_toolcomp_rows_name_file_row_field(tmp_path: Path, mutate: Any, message: str) -> None:
    rows = ps_rows()
    mutate(rows[1])
    path = _write(rows, tmp_path / "bad.jsonl")
    with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        tc.evaluate_file(path, scorer="random")
    r = CliRunner().invoke(app, ["eval-toolcomp", str(path), "--scorer", "random"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0]


def test_unknown_record_kind_is_one_error_line(tmp_path: Path) -> None:
    p = tmp_path / "odd.jsonl"
    p.write_text(json.dumps({"foo": 1}) + "\n")
    out = tmp_path / "o.json"
    r = CliRunner().invoke(app, ["eval-toolcomp", str(p), "--out", str(out)])
    assert r.exit_code == 2 and "row 1: record of no known kind" in r.output and not out.exists()
    fa = tmp_path / "fa.jsonl"
    fa.write_text(json.dumps({"prompt": "q", "answer": "1", "tools": []}) + "\n")
    r = CliRunner().invoke(app, ["eval-toolcomp", str(fa)])
    assert r.exit_code == 2 and "row 1: missing field 'policy_answer'" in r.output


# -- the grader ------------------------------------------------------------------------------

SF = "['San Francisco', 78, ['Golden State Warriors', 'Los Angeles Lakers']]"
SF_ORDERED = "[San Francisco, 78, {Golden State Warriors, Los Angeles Lakers}]"


@pytest.mark.parametrize(
    "pred, gold, grade",
    [
        # ToolComp's own grader examples (grade/llm_grade.py)
        ("['San Francisco', 74, ['Los Angeles Lakers', 'Golden State Warriors']]", SF, CORRECT),
        ("['San Francisco', -15, ['Los Angeles Lakers', 'Golden State Warriors']]", SF, INCORRECT),
        (
            "['San Francisco', 79, ['Los Angeles Lakers', 'Golden State Warriors']]",
            SF_ORDERED,
            BAD_FORMATTING,
        ),
        (
            "['San Francisco', 79, ['Golden State Warriors', 'Los Angeles Lakers']]",
            SF_ORDERED,
            CORRECT,
        ),
        # the bug: one number in a list-style answer is not the whole answer
        ("['Chicago', 77, ['Chicago Bulls']]", SF, INCORRECT),
        ("['Chicago', 77]", "78", INCORRECT),
        # nested lists given as a string, as ToolComp's finish spec types the answer
        ("[['b', 'a'], 3]", "[['a', 'b'], 3]", CORRECT),
        ('```json\n{"final_answer": [42]}\n```', "[42]", CORRECT),
        ("The answer is 42", "42", BAD_FORMATTING),
        ("41", "42", CORRECT),
        ("37", "42", INCORRECT),
        ("[2024-09-03, Tuesday]", "['2024-09-03', 'Tuesday']", CORRECT),
        # hostile inputs are graded, not raised on
        ("9" * 100_000, "5", INCORRECT),
        ("[" * 50_000, "5", INCORRECT),
        (10**400, 5, INCORRECT),
    ],
)
def test_toolcomp_grade(pred: Any, gold: Any, grade: str) -> None:
    assert toolcomp_grade(pred, gold) == grade
    assert grade_answer(pred, gold) is (grade != INCORRECT)


def test_ordered_list_marker_keeps_order() -> None:
    v = parse_answer(SF_ORDERED)
    assert v == ["San Francisco", 78, ["Golden State Warriors", "Los Angeles Lakers"]]
    assert isinstance(v[2], OrderedList) and not isinstance(v, OrderedList)
    wrong_order = "['San Francisco', 79, ['Los Angeles Lakers', 'Golden State Warriors']]"
    assert grade_answer(wrong_order, SF_ORDERED) is True  # ToolComp counts it (bad formatting)
    assert grade_answer(wrong_order, SF_ORDERED, strict_order=True) is False


def test_env_grades_a_nested_list_answer_given_as_a_string() -> None:
    from agentq.envs.tooluse.grading import grade_answer as env_grade
    from agentq.envs.tooluse.toolcomp import parse_answer as env_parse

    gold = env_parse("['Paris', ['Seine', 'Marne']]")
    assert env_grade("['Paris', ['Marne', 'Seine']]", gold) is True
    assert env_grade("['Lyon', ['Marne', 'Seine']]", gold) is False


# -- final answers: ToolComp's counting, chat and enterprise apart ---------------------------


class GradeModel(BaseProposer):
    """A judge model that answers the grade given for each student answer."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.valid: Any = None

    def propose(self, context, n, *, valid_actions=None):
        self.valid = valid_actions
        student = context[-1]["content"].split("Student Answer: ", 1)[1]
        return [Candidate(f"Reasoning: ...\nFinal Grade: {self.answers[student]}")] * n


def test_final_answer_counts_both_correct_grades_and_splits_chat_enterprise() -> None:
    chat = ["google_search", "python_interpreter"]
    ent = ["google_search", "python_interpreter", "calculator", "date"]
    recs = [
        {"prompt": "q1", "answer": "42", "policy_answer": "42", "tools": chat},
        {"prompt": "q2", "answer": "42", "policy_answer": "It is 42.", "tools": chat},
        {"prompt": "q3", "answer": "42", "policy_answer": "7", "tools": ent},
        {"prompt": "q4", "answer": SF, "policy_answer": SF, "tools": str(ent)},
    ]
    judge = tc.LLMJudgeGrader(
        GradeModel(
            {
                "42": "CORRECT",
                "It is 42.": "CORRECT BUT BAD FORMATTING",
                "7": "INCORRECT",
                SF: "nonsense",
            }
        )
    )
    res = tc.evaluate_records(recs, judge=judge)
    assert res["accuracy"] == 0.75
    assert res["grades"] == {"correct": 2, "correct_but_bad_formatting": 1, "incorrect": 1}
    assert res["splits"]["chat"]["accuracy"] == 1.0 and res["splits"]["chat"]["n"] == 2
    assert res["splits"]["enterprise"]["accuracy"] == 0.5
    assert res["judge"]["correct"] == 1 and res["judge"]["correct_but_bad_formatting"] == 1
    assert res["judge"]["unparsed"] == 1 and res["judge_accuracy"] == 0.5
    assert res["judge_splits"]["chat"]["accuracy"] == 1.0
    assert res["judge_splits"]["enterprise"]["accuracy"] == 0.0
    assert judge.proposer.valid == [CORRECT, BAD_FORMATTING, INCORRECT]
    assert tc.LLMJudgeGrader.parse("Final Grade: INCORRECT") == INCORRECT


# -- TARA as Themis reports it ---------------------------------------------------------------


class TieScorer(BaseScorer):
    def score(self, context, actions):
        return [0.0 for _ in actions]


def _tara_row(i: int, **extra: Any) -> dict[str, Any]:
    ans = {"actions": {}, "score_agent": {"explanation": "", "score": 0}}
    return {
        "id": str(i),
        "question": f"q{i}",
        "pos_answer": {"answer": "good", "score": 1, **ans},
        "neg_answer": {"answer": "bad", "score": -1, **ans},
        **extra,
    }


def test_tara_ties_count_as_wrong_and_context_is_prepended(tmp_path: Path) -> None:
    p = tmp_path / "agent_x_test.json"
    p.write_text(
        json.dumps(_tara_row(0, context="The shop opens at 9."))
        + "\n"
        + json.dumps(_tara_row(1))
        + "\n"
    )
    pairs = load_tara(p)
    assert pairs[0].context == [
        {"role": "user", "content": "Context: The shop opens at 9.\nQuestion: q0"}
    ]
    assert pairs[1].context == [{"role": "user", "content": "q1"}]
    res = pairwise_accuracy(TieScorer(), pairs)
    assert res.accuracy == 0.0 and res.strict_accuracy == 0.0 and res.half_tie_accuracy == 0.5
    out = tc.eval_pairs_files([p], "x", scorer_obj=TieScorer())
    row = out["files"]["x"]
    assert row["accuracy"] == 0.0 and row["half_tie_accuracy"] == 0.5 and row["format"] == "tara"
    assert "| x | 2 | 0.0% | wrong | 0.0% | 50.0% |" in tc.pairs_table(out)


def test_reward_model_prompt_keeps_the_tara_context() -> None:
    from agentq.models.reward import rm_messages

    msgs = rm_messages("Context: c1\nQuestion: q1", "a1", "- calc: x")
    assert msgs[1]["content"] == "Context: c1\nQuestion: q1\nAnswer: a1"
    assert rm_messages("q2", "a2", "")[1]["content"] == "Question: q2\nAnswer: a2"


def test_bad_tara_file_is_one_error_line(tmp_path: Path) -> None:
    row = _tara_row(0)
    del row["neg_answer"]["answer"]
    p = tmp_path / "agent_bad_test.json"
    p.write_text(json.dumps(row) + "\n")
    out = tmp_path / "o.json"
    r = CliRunner().invoke(app, ["eval-pairs", str(p), "--scorer", "random", "--out", str(out)])
    assert r.exit_code == 2 and not out.exists()
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert f"{p}: row 1 field 'neg_answer': missing field 'answer'" in lines[0]


@pytest.mark.skipif(not TARA_DIR.is_dir(), reason="shared TARA data not present")
def test_tara_headline_is_strict_on_real_files() -> None:
    res = tc.eval_pairs_files(
        [TARA_DIR / "agent_calendar_test.json"], "tool-verify", progress=False
    )
    r = res["files"]["calendar"]
    assert r["n"] == 106 and r["accuracy"] == r["strict_accuracy"] == r["wins"] / 106
    assert r["half_tie_accuracy"] == (r["wins"] + r["ties"] / 2) / 106


def test_toolcomp_pair_direct_call_names_row() -> None:
    with pytest.raises(UserInputError, match="f.jsonl: row 3: missing field 'prompt'"):
        toolcomp_pair({"history": "[]"}, source="f.jsonl", index=3)
