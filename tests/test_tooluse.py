"""The ToolComp-style tool-use environment: tools, sandbox attacks, env contract, expert,
random baseline, grader and the ToolComp loaders."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from agentq.envs import make
from agentq.envs.tooluse import (
    Calculator,
    CalendarTool,
    ExpertPolicy,
    PythonInterpreter,
    RandomToolPolicy,
    StockTool,
    Tool,
    ToolError,
    ToolUseEnv,
    WeatherTool,
    WikiSearch,
    as_langchain_tool,
    default_tools,
    expert_actions,
    grade_answer,
    load_final_answer,
    load_process_supervision,
    parse_turn,
    run_episode,
    run_tool_call,
    safe_eval,
)
from agentq.envs.tooluse.react import format_finish, format_turn
from agentq.envs.tooluse.tools import DATA_DIR, format_number

from agentq.errors import UserInputError


@pytest.fixture(scope="module")
def tools() -> dict[str, Tool]:
    return default_tools(python_timeout_s=10)


@pytest.fixture(scope="module")
def env() -> ToolUseEnv:
    return ToolUseEnv()


# -- calculator ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "expr, value",
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("-2 ** 2", -4),
        ("7 // 2 + 7 % 2", 4),
        ("2 ^ 10", 1024),
        ("sqrt(16) + abs(-3) + max(1, 5, 2) + min([4, 2])", 14),
        ("round(2.71828, 2)", 2.72),
        ("log(100, 10) + log10(1000) + exp(0)", 6),
        ("1_000 * 1e3", 1_000_000),
        ("pi * 2", 6.283185307179586),
    ],
)
def test_calculator_values(expr: str, value: float) -> None:
    assert safe_eval(expr) == pytest.approx(value)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("__import__('os').system('ls')", "unknown function"),
        ("(1).__class__", "unsupported syntax"),
        ("x + 1", "unknown name"),
        ("lambda: 1", "unsupported syntax"),
        ("10 ** 100000", "exponent too large"),
        ("9 ** 9 ** 9", "exponent too large"),
        ("factorial(100000)", "too large"),
        ("1 / 0", "division by zero"),
        ("sqrt(-1)", "math error"),
        ("'abc' * 3", "unsupported literal"),
        ("1 +", "cannot parse"),
        ("exp(1000)", "overflow"),
    ],
)
def test_calculator_refuses(expr: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        safe_eval(expr)


def test_calculator_tool_formats_and_accepts_bare_string() -> None:
    calc = Calculator()
    assert calc.run({"expression": "10 / 4"}) == "2.5"
    assert calc.run("3 * 4") == "12"  # a bare string is the single required argument
    assert calc.run('{"expression": "2 ** 3"}') == "8"
    with pytest.raises(ToolError, match="missing required"):
        calc.run({})
    with pytest.raises(ToolError, match="unknown argument"):
        calc.run({"expression": "1", "extra": 2})


# -- calendar, wiki, weather, stock ----------------------------------------------------------
def test_calendar() -> None:
    cal = CalendarTool()
    assert cal.run({"operation": "weekday", "date": "2024-03-05"}) == "2024-03-05 is a Tuesday"
    assert "2024-04-04 (Thursday)" in cal.run(
        {"operation": "add_days", "date": "2024-03-05", "days": "30"}
    )
    assert cal.run(
        {"operation": "days_between", "date": "2024-01-01", "end_date": "2025-01-01"}
    ).startswith("366 days")
    assert cal.run(
        {"operation": "next_weekday", "date": "2024-03-08", "weekday": "friday"}
    ).endswith("2024-03-15")
    assert "Tuesday" in cal.run({"operation": "weekday", "date": "March 5, 2024"})
    with pytest.raises(ToolError, match="not a date"):
        cal.run({"operation": "weekday", "date": "yesterday"})
    with pytest.raises(ToolError, match="must be one of"):
        cal.run({"operation": "explode", "date": "2024-03-05"})
    with pytest.raises(ToolError, match="needs 'days'"):
        cal.run({"operation": "add_days", "date": "2024-03-05"})


def test_wiki_search_custom_corpus() -> None:
    wiki = WikiSearch(
        [
            {"title": "Zorbland", "text": "Zorbland is a country famous for cheese."},
            {"title": "Quibble River", "text": "The Quibble River is 120 kilometres long."},
            {"title": "Plonk", "text": "Plonk is a city in Zorbland with many bridges."},
        ]
    )
    out = wiki.run({"query": "how long is the Quibble river"})
    assert out.startswith("[Quibble River]") and "120 kilometres" in out
    assert wiki.run({"query": "Plonk", "k": 1}).startswith("[Plonk]")
    assert "No articles" in wiki.run({"query": "xylophone"})


def test_shipped_tables(tools: dict[str, Tool]) -> None:
    weather, stock = tools["weather"], tools["stock"]
    assert isinstance(weather, WeatherTool) and isinstance(stock, StockTool)
    city = sorted(weather.cities)[0]
    rec = weather.lookup(city, "2024-07-01")
    assert rec["low_c"] <= rec["high_c"]
    assert f"Weather in {city} on 2024-07-01" in weather.run(
        {"city": city.upper(), "date": "2024-07-01"}
    )
    with pytest.raises(ToolError, match="no weather data for city"):
        weather.run({"city": "Atlantis", "date": "2024-07-01"})
    with pytest.raises(ToolError, match="covers"):
        weather.run({"city": city, "date": "1999-07-01"})
    ticker = sorted(stock.prices)[0]
    out = stock.run({"ticker": ticker.lower(), "date": "2024-03-05"})
    assert out.startswith(f"{ticker} (") and "close" in out
    with pytest.raises(ToolError, match="markets are closed"):
        stock.run({"ticker": ticker, "date": "2024-03-09"})
    with pytest.raises(ToolError, match="unknown ticker"):
        stock.run({"ticker": "NOPE", "date": "2024-03-05"})
    wiki = tools["wiki_search"]
    assert isinstance(wiki, WikiSearch) and len(wiki.docs) >= 150
    title = wiki.docs[20]["title"]
    assert wiki.run({"query": title}).startswith(f"[{title}]")


# -- python interpreter and its sandbox ------------------------------------------------------
def test_python_runs_and_prints(tools: dict[str, Tool]) -> None:
    py = tools["python_interpreter"]
    assert py.run({"code": "x = 6\nprint(x * 7)"}).strip() == "42"
    assert py.run({"code": "sum(range(10))"}).strip() == "45"  # a final expression is shown
    out = py.run({"code": "open('notes.txt', 'w').write('hi')\nprint(open('notes.txt').read())"})
    assert out.strip() == "hi"  # the scratch directory is writable
    assert "NameError" in py.run({"code": "print(x)"})  # no state kept between calls
    assert "ZeroDivisionError" in py.run({"code": "1 / 0"})
    assert "SyntaxError" in py.run({"code": "def ("})


def test_python_output_truncated() -> None:
    py = PythonInterpreter(timeout_s=10, max_output_chars=500)
    out = py.run({"code": "for i in range(100000):\n    print('line', i)"})
    assert "[output truncated to 500 characters]" in out
    assert len(out) < 700


# the sandbox's attack regression suite is tests/test_sandbox.py


# -- run_tool_call and the LangChain wrapper ------------------------------------------------
class _Boom(Tool):
    name = "boom"
    description = "always fails"
    parameters = {"type": "object", "properties": {}, "required": []}

    def _call(self) -> str:  # type: ignore[override]
        raise RuntimeError("kaboom")


def test_run_tool_call_turns_errors_into_observations(tools: dict[str, Tool]) -> None:
    obs, ok = run_tool_call(tools, "calculator", {"expression": "2 + 2"})
    assert (obs, ok) == ("4", True)
    obs, ok = run_tool_call(tools, "teleport", {})
    assert not ok and "unknown tool 'teleport'" in obs and "calculator" in obs
    obs, ok = run_tool_call(tools, "calculator", '{"expression": "1 + 1"')
    assert not ok and "not valid JSON" in obs
    obs, ok = run_tool_call(tools, "calculator", "[1, 2]")
    assert not ok and "JSON object" in obs
    obs, ok = run_tool_call({**tools, "boom": _Boom()}, "boom", {})
    assert not ok and "RuntimeError: kaboom" in obs
    obs, ok = run_tool_call(tools, "Calculator", {"expression": "3"})
    assert ok and obs == "3"


def test_langchain_tool(tools: dict[str, Tool]) -> None:
    from langchain_core.messages import AIMessage
    from langchain_core.utils.function_calling import convert_to_openai_tool
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    lc = as_langchain_tool(tools["calculator"])
    assert lc.name == "calculator"
    assert lc.invoke({"expression": "6 * 7"}) == "42"
    assert asyncio.run(lc.ainvoke({"expression": "6 * 8"})) == "48"
    assert lc.invoke({"expression": "1 / 0"}) == "Error: division by zero"
    spec = convert_to_openai_tool(lc)
    assert spec["function"]["parameters"]["required"] == ["expression"]
    node = ToolNode([lc, as_langchain_tool(tools["calendar"])])
    msg = AIMessage(
        content="",
        tool_calls=[
            {"name": "calculator", "args": {"expression": "2 + 3"}, "id": "a"},
            {"name": "calendar", "args": {"operation": "weekday", "date": "2024-03-05"}, "id": "b"},
        ],
    )
    graph = StateGraph(MessagesState)
    graph.add_node("tools", node)
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    out = graph.compile().invoke({"messages": [msg]})
    contents = {m.tool_call_id: m.content for m in out["messages"][1:]}
    assert contents == {"a": "5", "b": "2024-03-05 is a Tuesday"}


# -- the environment ------------------------------------------------------------------------
def test_registry_and_splits(env: ToolUseEnv) -> None:
    e = make("tooluse", max_steps=5)
    assert isinstance(e, ToolUseEnv) and e.name == "tooluse" and e.max_steps == 5
    train, test = env.tasks("train"), env.tasks("test")
    assert len(train) + len(test) >= 200 and len(test) >= 50
    assert not set(train) & set(test)
    assert set(env.tasks("all")) == set(train) | set(test)
    assert test == ToolUseEnv().tasks("test")  # fixed split
    multi = [t for t in env.tasks("all") if len(env.task(t)["calls"]) > 1]
    assert len(multi) >= 100
    tools_used = {tool for t in env.tasks("all") for tool in env.task(t)["tools"]}
    assert tools_used == {
        "calculator",
        "python_interpreter",
        "calendar",
        "wiki_search",
        "weather",
        "stock",
    }
    with pytest.raises(UserInputError):
        env.tasks("dev")
    assert env.valid_actions() is None and env.deterministic


def test_reset_context_lists_tools_and_format(env: ToolUseEnv) -> None:
    ctx = env.reset(env.tasks("test")[0])
    system = ctx[0]["content"]
    for name, tool in env.tools.items():
        assert f"- {name}:" in system
        assert json.dumps(tool.parameters, sort_keys=True, separators=(",", ":")) in system
    assert "Thought:" in system and "Action Input:" in system and "Action: finish" in system
    assert "Action Plan:" in system
    assert ctx[1]["role"] == "user" and ctx[1]["content"].startswith("Question: ")


def test_step_bad_outputs_are_observations(env: ToolUseEnv) -> None:
    tid = env.tasks("test")[0]
    env.reset(tid)
    cases = [
        ("I think the answer is 5.", "no action found"),
        ('Thought: t\nAction: calculator\nAction Input: {"expression": "1+"', "not valid JSON"),
        ("Thought: t\nAction: teleport\nAction Input: {}", "unknown tool"),
        ("Thought: t\nAction: calculator", "no 'Action Input:'"),
        ('Thought: t\nAction: calculator\nAction Input: {"expr": "1"}', "unknown argument"),
        (
            'Thought: t\nAction: weather\nAction Input: {"city": "Atlantis", "date": "2024-01-01"}',
            "no weather data",
        ),
        ('Thought: t\nAction: finish\nAction Input: {"result": 3}', "finish needs"),
        ("Action Plan:\n1. too late for a plan", "no action found"),
    ]
    env.step(format_turn("t", "calculator", {"expression": "1"}))  # a tool call: plans are over
    for action, message in cases:
        obs, reward, done, info = env.step(action)
        assert info["invalid"] is True, action
        assert message in obs, (action, obs)
        assert reward == 0 and not done


def test_plan_then_finish_rewards(env: ToolUseEnv) -> None:
    tid = next(t for t in env.tasks("test") if env.task(t)["template"] == "calendar_weekday")
    task = env.task(tid)
    env.reset(tid)
    obs, r, done, info = env.step("Action Plan:\n1. add the days with calendar\n2. finish")
    assert not info["invalid"] and info.get("plan") and "Plan noted" in obs
    call = task["calls"][0]
    obs, r, done, info = env.step(format_turn("go", call["tool"], call["args"]) + "\nEnd Action")
    assert not info["invalid"] and task["answer"] in obs
    obs, r, done, info = env.step(
        f'Thought: done\nAction: finish\nAction Input: {{"answer": "{task["answer"].lower()}"}}'
    )
    assert (r, done, info["correct"]) == (1.0, True, True)
    obs, r, done, info = env.step(format_finish("x"))
    assert info["invalid"] and done and r == 0
    env.reset(tid)
    obs, r, done, info = env.step(format_finish("Someday"))
    assert (r, done, info["correct"]) == (0.0, True, False) and info["gold"] == task["answer"]


def test_step_limit_and_snapshot(env: ToolUseEnv) -> None:
    small = ToolUseEnv(max_steps=3)
    tid = small.tasks("train")[0]
    small.reset(tid)
    step = format_turn("t", "calculator", {"expression": "1 + 1"})
    small.step(step)
    snap = small.snapshot()
    small.step(step)
    obs, r, done, info = small.step(step)
    assert done and info["step_limit"] and "Step limit of 3" in obs and r == 0
    small.restore(snap)
    obs, r, done, info = small.step(step)
    assert not done and obs == "2"
    obs, r, done, info = small.step(format_finish(small.task(tid)["answer"]))
    assert r == 1.0 and done


def test_expert_solves_every_shipped_task(env: ToolUseEnv) -> None:
    """Every shipped task is solvable, and its answer is what the tools return."""
    failures = []
    for tid in env.tasks("all"):
        task = env.task(tid)
        env.reset(tid)
        observations = []
        for action in expert_actions(task):
            obs, reward, done, info = env.step(action)
            assert not info["invalid"], (tid, action, obs)
            observations.append(obs)
        if not (done and reward == 1.0):
            failures.append(tid)
        tool_obs = observations[1:-1]  # without the plan and the finish
        gold = task["answer"]
        if task["calls"][-1]["tool"] in ("calculator", "python_interpreter"):
            assert grade_answer(tool_obs[-1].strip(), gold), (tid, tool_obs[-1], gold)
        else:
            text = "\n".join(tool_obs)
            for item in gold if isinstance(gold, list) else [gold]:
                shown = format_number(item) if isinstance(item, (int, float)) else str(item)
                assert shown in text, (tid, item)
    assert not failures


def test_expert_policy_object(env: ToolUseEnv) -> None:
    tid = env.tasks("train")[5]
    reward, infos = run_episode(env, tid, ExpertPolicy(env))
    assert reward == 1.0 and infos[0].get("plan")


def test_random_policy_rarely_succeeds(env: ToolUseEnv) -> None:
    """A random tool/argument/finish policy solves under 15% of the test tasks."""
    small = ToolUseEnv(max_steps=6, python_timeout_s=5)
    policy = RandomToolPolicy(small.tools, seed=0)
    tids = small.tasks("test")
    rewards, invalid, steps = [], 0, 0
    for tid in tids:
        r, infos = run_episode(small, tid, policy)
        rewards.append(r)
        invalid += sum(i["invalid"] for i in infos)
        steps += len(infos)
    rate = sum(rewards) / len(rewards)
    print(
        f"random policy: success {rate:.3f} on {len(tids)} test tasks, invalid steps {invalid / steps:.3f}"
    )
    assert rate < 0.15


# -- grader ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred, gold, ok",
    [
        ("42", 42, True),
        ("The answer is 45.5 dollars", 42, True),
        (38.0, 42, True),
        (37.7, 42, False),
        ("$1,234.50", 1234.5, True),
        ("-3.1", -3.0, True),
        ("3.1", -3.0, False),
        ("0", 0, True),
        ("0.01", 0, False),
        ("12 or 14", 13, False),
        ("tuesday.", "Tuesday", True),
        ("The Velmora", "Velmora", True),
        ("Velmoria", "Velmora", False),
        ("March 5, 2024", "2024-03-05", True),
        ("2024-03-06", "2024-03-05", False),
        ("Ab, Cd and Ef", ["Ef", "Ab", "Cd"], True),
        (["Ab", "Cd"], ["Ab", "Cd", "Ef"], False),
        ('["Cd", "Ab"]', ["Ab", "Cd"], True),
        ([10.2, "x"], ["x", 10], True),
        ("yes", True, True),
        ("no", True, False),
        (None, 5, False),
        ({"answer": "5"}, 5, True),
    ],
)
def test_grade_answer(pred: object, gold: object, ok: bool) -> None:
    assert grade_answer(pred, gold) is ok


def test_parse_turn_variants() -> None:
    t = parse_turn(
        'Thought: a\nAction: weather\nAction Input: {"city": "X",\n  "date": "2024-01-01"}\nObservation: made up'
    )
    assert t.kind == "tool" and t.args == {"city": "X", "date": "2024-01-01"} and t.thought == "a"
    t = parse_turn('Action: calculator\nAction Input: ```json\n{"expression": "1"}\n```')
    assert t.kind == "tool" and t.args == {"expression": "1"}
    assert parse_turn("Final Answer: 12").answer == 12
    assert parse_turn("Action: finish\nAction Input: 7").answer == 7
    assert parse_turn("Action Plan:\n1. x").kind == "plan"
    assert parse_turn("Action Plan:\n1. x", allow_plan=False).kind == "invalid"


# -- ToolComp loaders -----------------------------------------------------------------------
def _final_answer_records() -> list[dict[str, object]]:
    return [
        {
            "tools": ["calculator", "date", "historical_weather"],
            "prompt": "What is 6 times 7?",
            "answer": "42",
            "historical_date": "Tuesday, September 03, 2024",
            "pre_final_audit_prompt": "",
        },
        {
            "tools": ["wiki_search"],
            "prompt": "Name two colours of the flag.",
            "answer": "['red', 'white']",
            "historical_date": "",
            "pre_final_audit_prompt": "",
        },
    ]


def _process_records() -> list[dict[str, object]]:
    plan_step = {"action plan": {"text": "1. Use the calculator.\n2. Finish."}}
    react = {
        "thought": {"text": "Multiply.", "label": 1},
        "action": {"text": "calculator", "label": 1},
        "action_input": {"text": '{"expression": "6*7"}', "label": 1},
        "observation": {"text": "42", "label": 1},
    }
    bad = {
        "thought": {"text": "Guess.", "label": 0},
        "action": {"text": "finish", "label": 0},
        "action_input": {"text": '{"answer": "41"}', "label": 0},
        "observation": {"text": "", "label": 0},
    }
    return [
        {
            "prompt": "What is 6 times 7?",
            "tools": "['calculator']",
            "historical_date": "",
            "final_answer": "42",
            "history": json.dumps([]),
            "preferred": {"action plan": {"text": "1. Use the calculator."}},
            "dispreferred": {"action plan": {"text": "1. Guess."}},
        },
        {
            "prompt": "What is 6 times 7?",
            "tools": "['calculator']",
            "historical_date": "Tuesday, September 03, 2024",
            "final_answer": "42",
            "history": json.dumps([plan_step]),
            "preferred": react,
            "dispreferred": bad,
        },
    ]


def _write(records: list[dict[str, object]], path: Path) -> Path:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_toolcomp_final_answer_loader(tmp_path: Path, suffix: str) -> None:
    path = _write(_final_answer_records(), tmp_path / f"toolcomp{suffix}")
    tasks = load_final_answer(path)
    assert [t.prompt for t in tasks] == ["What is 6 times 7?", "Name two colours of the flag."]
    assert tasks[0].tools == ["calculator", "date", "historical_weather"]
    assert tasks[0].answer == 42 and tasks[0].answer_text == "42"
    assert (
        tasks[0].historical_date == "Tuesday, September 03, 2024"
        and tasks[1].historical_date is None
    )
    assert tasks[1].answer == ["red", "white"]
    env = ToolUseEnv(tasks_path=path)
    assert env.tasks("test") == [t.id for t in tasks] and env.tasks("train") == []
    ctx = env.reset(tasks[0].id)
    assert "September 03, 2024" in ctx[0]["content"]
    env.step(format_turn("multiply", "calculator", {"expression": "6*7"}))
    assert env.step(format_finish("42"))[1] == 1.0
    env.reset(tasks[1].id)
    assert env.step(format_finish(["white", "red"]))[1] == 1.0


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_toolcomp_process_supervision_loader(tmp_path: Path, suffix: str) -> None:
    path = _write(_process_records(), tmp_path / f"ps{suffix}")
    examples = load_process_supervision(path)
    assert len(examples) == 2
    first, second = examples
    assert first.is_plan and first.preferred.is_plan and first.tools == ["calculator"]
    assert first.preferred.render() == "Action Plan:\n1. Use the calculator."
    assert not second.is_plan and len(second.history) == 1 and second.history[0].is_plan
    assert second.preferred.labels["thought"] == 1 and second.dispreferred.labels["action"] == 0
    chosen = second.preferred.render()
    assert parse_turn(chosen).kind == "tool" and parse_turn(chosen).args == {"expression": "6*7"}
    assert parse_turn(second.dispreferred.render()).answer == "41"
    pair = second.to_pair()
    assert (
        pair["prompt"][0]["role"] == "system"
        and "September 03, 2024" in pair["prompt"][0]["content"]
    )
    assert pair["prompt"][2]["content"].startswith("Action Plan:")
    assert pair["chosen"][0]["content"] == chosen and pair["depth"] == 1


def test_toolcomp_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        load_final_answer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "x"}]))
    with pytest.raises(UserInputError, match="lacks prompt"):
        load_final_answer(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(UserInputError, match="cannot read"):
        load_process_supervision(broken)


# -- the generator reproduces the shipped data -----------------------------------------------
def test_generator_reproduces_shipped_data(tmp_path: Path) -> None:
    from agentq.envs.tooluse.generate import build_tasks, build_world, write_tasks, write_world

    world = build_world(0)
    write_world(world, tmp_path)
    for name in ("wiki.jsonl", "weather.json", "stocks.json"):
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), name
    write_tasks(build_tasks(world, tmp_path, 0, check_python=False), tmp_path)
    assert (tmp_path / "tasks.jsonl").read_bytes() == (DATA_DIR / "tasks.jsonl").read_bytes()


def test_no_scratch_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = PythonInterpreter(timeout_s=5).run(
        {"code": "import os\nopen('f.txt', 'w').write('x')\nprint(os.getcwd())"}
    )
    assert out.strip() == "/scratch"  # a tmpfs inside the sandbox
    assert os.listdir(tmp_path) == []  # the runner directory (program, output) is removed
