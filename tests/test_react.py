"""The one ReAct parser (agentq.react) and the one observation text (agentq.render)."""

from __future__ import annotations

import time

from agentq.react import ReactStep, first_with, parse_react
from agentq.render import (
    OBSERVATION_MARKER,
    observation_after_marker,
    observation_message,
    observation_text,
)


def test_fields_steps_and_continuation_lines() -> None:
    text = (
        "preamble is ignored\n"
        "Thought: a\nAction: X\nAction Input: 1\nObservation: line1\nline2\n"
        'Thought: b\nAction: Y\nAction Input: {\n  "k": 2\n}'
    )
    s1, s2 = parse_react(text)
    assert (s1.thought, s1.action, s1.action_input, s1.observation) == (
        "a",
        "X",
        "1",
        "line1\nline2",
    )
    assert (s2.action_name, s2.action_input, s2.observation) == ("Y", '{\n  "k": 2\n}', None)


def test_a_field_that_does_not_follow_starts_a_step() -> None:
    steps = parse_react("Action: a\nObservation: o\nAction: b\nAction Input: {}")
    assert [s.action for s in steps] == ["a", "b"]
    assert steps[0].action_input is None and steps[1].action_input == "{}"
    # an input written before its action belongs to a step of its own
    steps = parse_react("Action Input: {}\nAction: a")
    assert first_with(steps, "action_input", first_with(steps, "action") or 0) is None


def test_markdown_case_plan_final_answer_and_end_action() -> None:
    (s,) = parse_react("**Action:** calculator\n> action input: {}\nEnd Action\nignored")
    assert s.action_name == "** calculator" and s.action_input == "{}"
    assert s.end_action == "ignored"  # text after End Action is its own, not the input's
    (plan,) = parse_react("Action Plan:\n1. search\n2. finish")
    assert plan.plan == "1. search\n2. finish"
    (fin,) = parse_react("Thought: done\nFinal Answer: 12")
    assert fin.final_answer == "12" and fin.thought == "done"
    # an empty field is there, empty; the action name is its own line only
    (e,) = parse_react("Action:\nsome text")
    assert e.action == "some text" and e.action_name == "" and not ReactStep().action_name


def test_linear_in_the_text_length() -> None:
    unit = "Action: a\nAction Input: {\n"
    times = []
    for reps in (4_000, 40_000):
        t0 = time.perf_counter()
        parse_react(unit * reps)
        times.append(time.perf_counter() - t0)
    assert times[1] < 30 * times[0] + 0.5


def test_observation_text_is_one_function() -> None:
    assert observation_text("42") == "Observation: 42"
    assert observation_message("42") == {"role": "user", "content": "Observation: 42"}
    assert OBSERVATION_MARKER + observation_after_marker("42") == observation_text("42")
