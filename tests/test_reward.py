"""Tool-augmented reward model: TARA loader, tool-verification baseline, trace execution, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agentq.envs.tooluse.executor import ToolExecutor
from agentq.envs.tooluse.tara import tara_tools
from agentq.envs.tooluse.verify import ToolVerifyScorer

from agentq.data.tara import (
    TARA_FILES,
    TaraStep,
    load_tara,
    load_tara_dir,
    pairwise_accuracy,
    parse_actions,
)
from agentq.errors import UserInputError
from agentq.models.reward import (
    RMBudget,
    ToolAugmentedRewardModel,
    ToolAugmentedScorer,
    encode_trace,
    parse_tool_call,
)

TARA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tara"
if not TARA.is_dir():  # a fresh clone next to the shared folder, or the shared checkout itself
    TARA = Path("/work/shared/data/tara")
needs_tara = pytest.mark.skipif(not TARA.is_dir(), reason=f"TARA data not found at {TARA}")
Q = [{"role": "user", "content": "What is 123*456?"}]


# -- loader ----------------------------------------------------------------------------------
@needs_tara
def test_loader_reads_all_five_files() -> None:
    data = load_tara_dir(TARA)
    assert sorted(data) == sorted(TARA_FILES)
    sizes = {k: len(v) for k, v in data.items()}
    assert sizes == {
        "calculator": 154,
        "calendar": 106,
        "weather": 158,
        "multi_tools": 144,
        "wikisearch": 284,
    }
    for pairs in data.values():
        for p in pairs:
            assert p.question and p.pos.answer and p.neg.answer
            assert p.pos.steps and all(s.action for s in p.pos.steps)
    multi = data["multi_tools"][0]
    assert [s.action for s in multi.pos.steps] == ["Calendar.target_day", "history_weather"]
    assert "humidity" in (
        multi.pos.steps[1].observation or ""
    )  # the multi-line observation is whole


def test_parse_actions_dict_and_string() -> None:
    d = parse_actions(
        {"Thought": "t", "Action": "calculator", "Action Input": "1+1", "Observation": "2"}
    )
    assert d == [TaraStep("t", "calculator", "1+1", "2")]
    text = "Thought: a\nAction: X\nAction Input: 1\nObservation: line1\nline2\nThought: b\nAction: Y\nAction Input: 2"
    steps = parse_actions(text)
    assert [(s.action, s.observation) for s in steps] == [("X", "line1\nline2"), ("Y", None)]
    assert parse_actions("") == []
    with pytest.raises(ValueError):
        parse_actions(3)


def test_loader_bad_row(tmp_path: Path) -> None:
    p = tmp_path / "agent_x_test.json"
    p.write_text(json.dumps({"id": "1", "question": "q"}) + "\n")
    with pytest.raises(UserInputError, match="pos_answer"):
        load_tara(p)


# -- baseline ---------------------------------------------------------------------------------
@needs_tara
@pytest.mark.parametrize("name", ["calculator", "calendar"])
def test_tool_verify_above_80_percent(name: str) -> None:
    pairs = load_tara(TARA / TARA_FILES[name])
    res = pairwise_accuracy(ToolVerifyScorer(), pairs)
    assert res.n == len(pairs)
    assert res.strict_accuracy > 0.8  # ties counted as wrong


def test_tool_verify_claims() -> None:
    s = ToolVerifyScorer()
    good = "He buys 3*4 = <<3*4=12>>12 apples.\n#### 12"
    bad_calc = "He buys 3*4 = <<3*4=13>>13 apples.\n#### 13"
    bad_final = "He buys 3*4 = <<3*4=12>>12 apples.\n#### 15"
    assert s.score(Q, [good, bad_calc, bad_final]) == [1.0, 0.0, 0.5]
    cal = [{"role": "user", "content": "What day of the week is 2015-03-24?"}]
    assert s.score(cal, ["2015-03-24 is Tuesday", "2015-03-24 is Sunday"]) == [1.0, 0.0]
    q2 = [{"role": "user", "content": "What day is 223 days after 2017-09-28?"}]
    assert s.score(q2, ["The day after 2017-09-28 223 days is 2018-05-09", "It is 2018-05-10"]) == [
        1.0,
        0.0,
    ]
    # nothing checkable: neutral (the search-support check is off here)
    assert ToolVerifyScorer(support=False).score(Q, ["no claim here"]) == [0.5]


def test_recorded_tool_replays_and_flags_missing() -> None:
    ex = ToolExecutor(tara_tools(include_env_tools=False))
    ex.add_records(
        "history_weather", {"Paris, 2023-06-01": "overall weather: Sunny; humidity: 40.0"}
    )
    r = ex.execute("history_weather", "paris, 2023-06-01")
    assert r.ok and "Sunny" in r.observation
    miss = ex.execute("history_weather", "Rome, 2023-06-01")
    assert not miss.ok and miss.observation.startswith("Error:")
    q = [{"role": "user", "content": "What is the humidity in Paris on 2023-06-01?"}]
    s = ToolVerifyScorer(tools=ex.tools)
    assert s.score(q, ["The humidity is 40.0.", "The humidity is 55.0."]) == [1.0, 0.0]


def test_executor_bad_calls_are_observations_and_cached() -> None:
    ex = ToolExecutor(tara_tools(include_env_tools=False))
    r = ex.execute("no_such_tool", "x")
    assert not r.ok and "unknown tool" in r.observation
    r = ex.execute("Calendar.target_day", "not a date")
    assert not r.ok and r.observation.startswith("Error:")
    a = ex.execute("calculator", "2*21")
    b = ex.execute("calculator", "2*21")
    assert (a.observation, a.source, b.source) == ("42", "tool", "cache")
    assert ex.execute("calculator", "2+21").observation == "23"  # cache keys keep operators


# -- learned model: traces ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny() -> tuple:
    from agentq.models.tiny import make_tiny_model, make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    return make_tiny_model(tok), tok


def _calc_tools() -> dict:
    return {
        k: v
        for k, v in tara_tools(include_env_tools=False).items()
        if k in ("calculator", "Calendar.week_day")
    }


def test_scripted_trace_is_executed_and_observations_reach_the_model(tiny: tuple) -> None:
    lm, tok = tiny
    seen: list[list[str]] = []
    rounds = iter(
        [
            [
                "Thought: check it\nAction: calculator\nAction Input: 123*456\nObservation: made up",
                "Thought: x\nAction: nonexistent\nAction Input: 1\nObservation:",
            ],
            [
                "Thought: and the date\nAction: Calendar.week_day\nAction Input: 2015-03-24\nObservation:",
                "Rationale: bad",
            ],
            ["Rationale: the product is 56088, so the answer is right."],
        ]
    )

    def scripted(batch: list[list[int]], max_new: int) -> list[str]:
        seen.append([tok.decode(b) for b in batch])
        return next(rounds)

    # uncached, so the spy sees each whole sequence the value pass runs
    rm = ToolAugmentedRewardModel(
        lm, tok, tools=_calc_tools(), generator=scripted, prefix_cache=False
    )
    captured: list = []
    orig = rm.values

    def spy(ids, mask):  # type: ignore[no-untyped-def]
        captured.append(ids.clone())
        return orig(ids, mask)

    rm.values = spy  # type: ignore[method-assign]
    scorer = ToolAugmentedScorer(rm)
    scores = scorer.score(Q, ["56088", "5"])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    t0, t1 = scorer.last_traces
    # the real calculator answered, not the text the model made up
    assert [s.observation for s in t0.steps] == ["56088", "Tuesday"]
    assert t0.finished and t0.budget_hit is None
    # an invented tool is an observation, flagged, not a crash
    assert t1.invalid_calls == 1 and "unknown tool" in t1.steps[0].observation
    # the observations were in the model input of the next round and of the value pass
    assert "Observation: 56088\n" in seen[1][0]
    assert "Observation: Tuesday\n" in seen[2][0]
    final = tok.decode(captured[-1][0])
    assert (
        "Observation: 56088" in final
        and "Observation: Tuesday" in final
        and "so the answer is right" in final
    )


def test_budgets_cut_and_flag(tiny: tuple) -> None:
    lm, tok = tiny
    loop = "Action: calculator\nAction Input: 1+1\nObservation:"
    rm = ToolAugmentedRewardModel(
        lm, tok, tools=_calc_tools(), generator=lambda b, n: [loop] * len(b)
    )
    scorer = ToolAugmentedScorer(rm, budget=RMBudget(max_tool_calls=2, max_new_tokens=10_000))
    scorer.score(Q, ["a"])
    tr = scorer.last_traces[0]
    assert tr.budget_hit == "tool_calls" and len(tr.steps) == 2 and not tr.finished
    # real generation with a random tiny model runs into the token budget
    rm2 = ToolAugmentedRewardModel(lm, tok, tools=_calc_tools())
    s2 = ToolAugmentedScorer(rm2, budget=RMBudget(max_new_tokens=12, max_segment_tokens=8))
    out = s2.score(Q, ["a", "b", "c"])
    assert len(out) == 3
    assert all(t.generated_tokens <= 12 for t in s2.last_traces)


def test_parse_tool_call() -> None:
    assert parse_tool_call("Thought: t\nAction: calculator\nAction Input: 1+2\nObservation:") == (
        "calculator",
        "1+2",
    )
    assert parse_tool_call("Rationale: fine") is None


def test_mean_pooling_and_empty(tiny: tuple) -> None:
    lm, tok = tiny
    rm = ToolAugmentedRewardModel(lm, tok, tools=_calc_tools(), pooling="mean")
    s = ToolAugmentedScorer(rm, trace="none")
    assert s.score(Q, []) == []
    a, b = s.score(Q, ["x", "a much longer answer"])
    assert a != b
    with pytest.raises(UserInputError):
        ToolAugmentedRewardModel(lm, tok, pooling="max")


# -- training ---------------------------------------------------------------------------------
def _synthetic_pairs() -> list:
    from agentq.models.reward_train import RMExample, RMPair

    ex = ToolExecutor(_calc_tools())

    def mk(i: int, good: bool) -> RMExample:
        a, b = 3 + i, 4 + i
        c = a * b if good else a * b + 1
        step = TaraStep("check the product", "calculator", f"<<{a}*{b}={c}>>{c}", None)
        step.observation = ex.execute(step.action, step.action_input).observation
        # the rationale is the same for both: the only signal is the tool's real observation
        return RMExample(f"What is {a} times {b}?", f"<<{a}*{b}={c}>>{c}", [step], "checked.")

    return [RMPair(mk(i, True), mk(i, False), str(i)) for i in range(6)]


def test_training_loss_decreases_and_accuracy_reaches_one(tmp_path: Path) -> None:
    from agentq.models.reward import load_reward_model
    from agentq.models.reward_train import (
        RMTrainConfig,
        teacher_forced_accuracy,
        train_reward_model,
    )
    from agentq.models.tiny import save_tiny_model

    base = save_tiny_model(tmp_path / "base")
    pairs = _synthetic_pairs()
    cfg = RMTrainConfig(
        base=str(base),
        lora_r=4,
        lora_alpha=8,
        lr=5e-3,
        head_lr=2e-2,
        epochs=100,
        max_steps=30,
        batch_size=3,
        max_length=512,
        seed=0,
    )
    rm, res = train_reward_model(
        pairs, tmp_path / "rm", cfg, eval_pairs=pairs, progress=False, tools=_calc_tools()
    )
    assert res.metrics["last_loss"] < res.metrics["first_loss"]
    assert res.metrics["eval_teacher_forced_accuracy"] == 1.0
    # through the Scorer: the trace (scripted tool call, real calculator observation) decides
    tok = rm.tokenizer

    def scripted(batch: list[list[int]], max_new: int) -> list[str]:
        out = []
        for ids in batch:
            tail = tok.decode(ids).split("Answer:")[-1]
            answer = tail.split("<|im_end|>")[0].strip()
            if "Observation:" in tail:
                out.append("Rationale: checked.")
            else:
                out.append(
                    f"Thought: check the product\nAction: calculator\nAction Input: {answer}\nObservation:"
                )
        return out

    rm.generator = scripted
    triples = [
        ([{"role": "user", "content": p.pos.question}], p.pos.answer, p.neg.answer) for p in pairs
    ]
    acc = pairwise_accuracy(ToolAugmentedScorer(rm), triples)
    assert acc.strict_accuracy == 1.0
    rm.generator = None
    # the saved directory loads back (adapter + value head + config) and gives the same values
    rm2 = load_reward_model(tmp_path / "rm", device="cpu", dtype="float32")
    assert list(rm2.tools) == list(_calc_tools())
    assert teacher_forced_accuracy(rm2, pairs, cfg) == 1.0
    cfg_doc = json.loads((tmp_path / "rm" / "reward_model.json").read_text())
    assert cfg_doc["format"] == "agentq-reward-model" and cfg_doc["metrics"]["steps"] == 30
    # and as a Scorer through the spec registry
    from agentq.specs import resolve_scorer

    s = resolve_scorer(f"rm:{tmp_path / 'rm'}", trace="none", device="cpu")
    assert len(s.score(Q, ["1", "2"])) == 2


def test_bad_reward_model_dir(tmp_path: Path) -> None:
    from agentq.models.reward import load_reward_model

    with pytest.raises(UserInputError, match="not found"):
        load_reward_model(tmp_path / "missing")
    (tmp_path / "d").mkdir()
    with pytest.raises(UserInputError, match="reward_model.json"):
        load_reward_model(tmp_path / "d")


def test_encode_trace_kinds(tiny: tuple) -> None:
    _, tok = tiny
    ids, kinds = encode_trace(
        tok, Q, [("model", "Action: x\nAction Input: 1\nObservation:"), ("observation", " 2\n")]
    )
    assert kinds[-1] == "eos" and "observation" in kinds and kinds[0] == "prompt"
    assert len(ids) == len(kinds)


async def test_async_twin_matches_sync() -> None:
    s = ToolVerifyScorer(support=False)
    acts = ["3*4 = <<3*4=12>>12\n#### 12", "3*4 = <<3*4=11>>11\n#### 11"]
    assert await s.ascore(Q, acts) == s.score(Q, acts) == [1.0, 0.0]


def test_train_rm_cli_bad_input(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from agentq.models.reward_cli import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer's sub-command layout
    res = CliRunner().invoke(
        app, ["train-rm", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "not found" in res.output


def test_train_rm_flags_are_the_config_fields(tmp_path: Path) -> None:
    """``agentq train-rm``'s flags come from TrainRMConfig; a bad value (command line or
    --config file) is one error line and exit code 2."""
    import typer
    from typer.testing import CliRunner

    from agentq.cli import app
    from agentq.config import from_options, options
    from agentq.models.reward_cli import TrainRMConfig

    params = {p.name: p for p in typer.main.get_command(app).commands["train-rm"].params}
    opts = [o for o in options(TrainRMConfig) if o.cli]
    assert set(params) == {o.name for o in opts} | {"config"}
    for o in opts:
        assert params[o.name].help == o.help, o.name
        assert o.argument or o.default is ... or params[o.name].default == o.default, o.name
    assert params["data"].required and params["out"].required
    for bad, what in (
        ({"holdout": 1.0}, "--holdout"),
        ({"tools": "some"}, "--tools"),
        ({"pooling": "max"}, "pooling"),
        ({"lr": 0.0}, "lr"),
    ):
        with pytest.raises(UserInputError, match=what):
            from_options(TrainRMConfig, {"data": "d.jsonl", "out": "o", **bad})
    c = from_options(TrainRMConfig, {"data": ["a", "b"], "out": "o", "lora_r": 4})
    assert c.data == [Path("a"), Path("b")] and c.rm_train_config().lora_alpha == 8
    cfg = tmp_path / "r.toml"
    cfg.write_text("holdout = 1.5\n")
    r = CliRunner().invoke(
        app, ["train-rm", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(cfg)]
    )
    assert r.exit_code == 2 and r.stderr.strip() == "error: --holdout must be in [0, 1)"


# -- where things live: one executor, tool sets and scorers found by name -------------------------
def test_one_executor_for_env_and_reward_model() -> None:
    from agentq.envs.tooluse.executor import run_tool_call

    tools = tara_tools(include_env_tools=False)
    # the environment reads text arguments as JSON; the reward model's executor passes TARA's
    # plain-text inputs through to the same function
    obs, ok = run_tool_call(tools, "Calendar.week_day", "2015-03-24")
    assert not ok and "not valid JSON" in obs
    assert run_tool_call(tools, "Calendar.week_day", "2015-03-24", text_args="raw") == (
        "Tuesday",
        True,
    )
    assert ToolExecutor(tools).execute("`calendar.WEEK_DAY`", "2015-03-24").observation == "Tuesday"


def test_toolset_and_scorers_come_from_entry_points() -> None:
    from agentq.envs.tooluse.tara import TaraToolset

    from agentq import registry
    from agentq.models.reward import load_toolset
    from agentq.specs import resolve_scorer

    assert isinstance(load_toolset(), TaraToolset)
    assert {"tool-verify", "toy-oracle"} <= set(registry.names(registry.SCORERS))
    assert isinstance(resolve_scorer("tool-verify"), ToolVerifyScorer)
    with pytest.raises(UserInputError, match="not registered"):
        load_toolset("nope")
    with pytest.raises(UserInputError, match="unknown scorer spec"):
        resolve_scorer("nope")


def test_moved_names_say_where_they_went() -> None:
    with pytest.raises(ImportError, match=r"agentq\.envs\.tooluse\.executor"):
        from agentq.models.reward import ToolExecutor as _  # noqa: F401


def test_reward_model_takes_any_toolset(tiny: tuple) -> None:
    lm, tok = tiny
    made: list[float] = []

    class OneTool:
        def tools(self, *, include_env_tools: bool = True) -> dict:
            return _calc_tools()

        def executor(self, tools: dict | None = None, *, timeout_s: float = 10.0) -> ToolExecutor:
            made.append(timeout_s)
            return ToolExecutor(tools or self.tools(), timeout_s=timeout_s)

    rm = ToolAugmentedRewardModel(
        lm,
        tok,
        toolset=OneTool(),
        generator=lambda b, n: ["Action: calculator\nAction Input: 2*21\nObservation:"] * len(b),
    )
    s = ToolAugmentedScorer(rm, budget=RMBudget(max_tool_calls=1, tool_timeout_s=3.0))
    s.score(Q, ["42"])
    assert list(rm.tools) == list(_calc_tools()) and made == [3.0]
    assert s.last_traces[0].steps[0].observation == "42"


def test_prefix_shared_training_pass_equals_plain_pass(tiny: tuple) -> None:
    """The shared-prefix pass gives the plain pass's loss parts and gradients."""
    import torch

    from agentq.models.reward_train import RMTrainConfig, build_model, pair_losses

    lm, tok = tiny
    pairs = _synthetic_pairs()[:3]
    grads = []
    parts_seen = []
    for share in (False, True):
        cfg = RMTrainConfig(base="tiny", share_prefix=share, lora_layers=1, seed=3)
        rm = build_model(cfg, lm, tok, _calc_tools())
        # a non-zero LoRA B so the adapter changes the prefix's KV too
        with torch.no_grad():
            for n, p in rm.lm.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.linspace(-0.05, 0.05, p.numel()).view_as(p))
        loss, parts = pair_losses(rm, pairs, cfg)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in rm.lm.named_parameters() if p.grad is not None})
        parts_seen.append(parts)
        rm.lm.zero_grad()
        lm = rm.lm.unload()  # the base again, for the next adapter
    assert abs(parts_seen[0]["loss"] - parts_seen[1]["loss"]) < 1e-4
    assert abs(parts_seen[0]["lm_loss"] - parts_seen[1]["lm_loss"]) < 1e-4
    assert grads[0].keys() == grads[1].keys() and grads[0]
    # lora_layers=1: only the top layer has trainable weights
    assert all(".layers.1." in n for n in grads[0] if "lora" in n), sorted(grads[0])
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-3), n


def test_no_tools_trace_mode_executes_nothing(tiny: tuple) -> None:
    lm, tok = tiny
    rounds = iter(
        [
            ["Thought: check\nAction: calculator\nAction Input: 2+2\nObservation:"],
            [" 5 (my guess)\nRationale: wrong."],
        ]
    )
    rm = ToolAugmentedRewardModel(
        lm, tok, tools=_calc_tools(), generator=lambda b, n: next(rounds), prefix_cache=False
    )
    s = ToolAugmentedScorer(rm, trace="no-tools")
    s.score(Q, ["4"])
    tr = s.last_traces[0]
    assert [(st.action, st.source) for st in tr.steps] == [("calculator", "not-executed")]
    assert tr.finished and all(k != "observation" for k, _ in tr.segments)
    assert "Observation: 5 (my guess)" in tr.text
