"""The prefix (KV) cache: nothing changes but the compute (tiny offline models only)."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentq.errors import UserInputError
from agentq.models.loading import load_causal_lm
from agentq.models.prefix_cache import (
    DEFAULT_CACHE_BYTES,
    PrefixCache,
    model_namespace,
    parse_cache_bytes,
    resolve_prefix_cache,
    shared_prefixes,
)
from agentq.models.proposer import LocalProposer
from agentq.models.scorer import (
    QValueScorer,
    adapter_disabled,
    naive_logprobs,
    prefix_shared_logprobs,
)
from agentq.models.tiny import save_tiny_model, save_tiny_qmodel
from agentq.render import advance_context, tokenize_for_scoring, truncate_context
from agentq.types import Context

TASK: Context = [
    {"role": "system", "content": "You shop for the user. Answer with one action."},
    {"role": "user", "content": "Instruction: find a red cotton shirt under 20 dollars."},
]
VALID = ["search[...]", "click[B07RED]", "click[next >]", "click[back to search]"]


def episode(steps: int, obs_len: int = 3) -> list[Context]:
    """The contexts of a growing episode: step t's is step t-1's plus an action and a page."""
    out = [list(TASK)]
    for t in range(steps - 1):
        page = f"Page {t}: " + " ".join(f"item{t}-{k} $1{k}.99" for k in range(obs_len))
        out.append(advance_context(out[-1], f"click[item {t}]", page))
    return out


def actions(t: int) -> list[str]:
    return ["search[red shirt]", f"click[item {t}]", "Thought: the second looks right.\nclick[B]"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pc")
    base = save_tiny_model(root / "base")
    q = save_tiny_qmodel(root / "q", base, beta=0.5)
    return {"base": base, "q": q}


def _max_diff(a: Any, b: Any) -> float:
    return max(
        (abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)),
        default=0.0,
    )


# -- budget parsing ------------------------------------------------------------------------
def test_parse_cache_bytes() -> None:
    assert parse_cache_bytes("512MiB") == DEFAULT_CACHE_BYTES
    assert parse_cache_bytes("2GB") == 2 * 10**9
    assert parse_cache_bytes(4096) == 4096 and parse_cache_bytes("1e6") == 10**6
    for bad in (0, -1, "0", "-5MiB", "lots", "", "12 parsecs", True, float("nan"), None):
        with pytest.raises(UserInputError) as e:
            parse_cache_bytes(bad)
        assert "positive size" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserInputError):
        resolve_prefix_cache(True, "0")
    assert resolve_prefix_cache(False) is None


# -- scores equal uncached -----------------------------------------------------------------
@pytest.mark.parametrize("max_length", [None, 150])
def test_cached_scores_equal_uncached_on_growing_contexts(
    dirs: dict[str, Path], max_length: int | None
) -> None:
    """Q values over a 6-step episode, adapter on and off, with and without truncation."""
    cache = PrefixCache("64MiB")
    cached = QValueScorer.from_pretrained(
        dirs["q"], device="cpu", prefix_cache=cache, max_length=max_length
    )
    plain = QValueScorer.from_pretrained(
        dirs["q"], device="cpu", prefix_cache=False, max_length=max_length
    )
    model, tok = cached.model, cached.tokenizer
    on, off = model_namespace(model, adapter=True), model_namespace(model, adapter=False)
    assert on != off
    truncated = 0
    for t, ctx in enumerate(episode(6)):
        acts = actions(t)
        got, want = cached.score(ctx, acts), plain.score(ctx, acts)
        assert max(abs(x - y) for x, y in zip(got, want, strict=True)) < 1e-4
        # per-token log-probs of each adapter state against the naive full-sequence path
        for ns, ctxmgr in ((on, None), (off, adapter_disabled)):
            items = [(ctx, acts)]
            if ctxmgr is None:
                a = prefix_shared_logprobs(
                    model, tok, items, max_length=max_length, cache=cache, namespace=ns
                )
                b = naive_logprobs(model, tok, items, max_length=max_length)
            else:
                with ctxmgr(model):
                    a = prefix_shared_logprobs(
                        model, tok, items, max_length=max_length, cache=cache, namespace=ns
                    )
                    b = naive_logprobs(model, tok, items, max_length=max_length)
            assert _max_diff(a[0], b[0]) < 1e-4
        if max_length and truncate_context(tok, ctx, max_length - 40)[2]:
            truncated += 1
    st = cached.stats()
    assert st["hits"] > 0 and st["tokens_reused"] > 0 and st["cache"]["bytes"] > 0
    assert plain.stats()["cache"] is None
    if max_length:
        assert truncated >= 2  # the middle turns really were dropped
    else:  # a growing context: most prompt tokens come from the cache
        assert st["tokens_reused"] > st["tokens_computed"]


def test_batch_of_contexts_with_different_cached_lengths(dirs: dict[str, Path]) -> None:
    """One batch whose rows have different cached prefixes (and one with none)."""
    model, tok = load_causal_lm(str(dirs["base"]), device="cpu", dtype="float32")
    cache = PrefixCache("64MiB")
    eps = episode(5)
    prefix_shared_logprobs(model, tok, [(eps[1], ["x"]), (eps[3], ["y"])], cache=cache)
    items = [
        (eps[2], actions(2)),
        (eps[4], actions(4)),
        ([{"role": "user", "content": "a different task"}], ["click[a]"]),
        (eps[0], ["click[next >]", "z"]),
    ]
    a = prefix_shared_logprobs(model, tok, items, cache=cache)
    b = naive_logprobs(model, tok, items)
    for ra, rb in zip(a, b, strict=True):
        assert _max_diff(ra, rb) < 1e-4
    assert cache.totals.hits >= 3


def test_shared_prefixes_of_a_batch() -> None:
    """Which prefixes two or more prompts of a batch share beyond what is cached, when
    computing them once saves enough tokens."""
    sys_ = list(range(100, 140))  # a 40-token system prompt
    a, b, c = sys_ + [1, 2, 3], sys_ + [1, 2, 4], sys_ + [7, 8]
    # a and b hold 42 shared tokens (saving 1 x 42), all three the 40 of sys_ (2 x 40)
    assert shared_prefixes([a, b, c], [0, 0, 0], min_saving=40) == [sys_ + [1, 2]]
    assert shared_prefixes([a, b, c], [0, 0, 0], min_saving=60) == [sys_]
    assert shared_prefixes([a, b, c], [0, 0, 0], min_saving=81) == []
    assert shared_prefixes([a, b, c], [0, 0, 0]) == []  # 128 by default
    assert shared_prefixes([a, c], [30, 30], min_saving=10) == [sys_]
    assert shared_prefixes([a, c], [30, 30], min_saving=11) == []  # only 10 uncached
    assert shared_prefixes([sys_, sys_ + [5]], [0, 0], 1) == [sys_[:-1]]  # one short of each
    assert shared_prefixes([a], [0], 1) == [] and shared_prefixes([a, [9] + a], [0, 0], 1) == []


def test_agents_sharing_a_system_prompt_compute_it_once(dirs: dict[str, Path]) -> None:
    """Four agents' first requests in one batch: their common system prompt is computed
    once, and every score still equals the uncached one (adapter on and off)."""
    system = {"role": "system", "content": "You shop for the user. " * 12}  # > 128 / 3 tokens
    items = [
        (
            [system, {"role": "user", "content": f"Agent {k}: find item {k} under {k}0 dollars."}],
            actions(k),
        )
        for k in range(4)
    ]
    cached = QValueScorer.from_pretrained(
        dirs["q"], device="cpu", prefix_cache=PrefixCache("64MiB")
    )
    plain = QValueScorer.from_pretrained(dirs["q"], device="cpu", prefix_cache=False)
    got, want = cached.score_batch(items), plain.score_batch(items)
    assert _max_diff(got, want) < 1e-4
    tok = cached.tokenizer
    prompts = [tokenize_for_scoring(tok, c, a[0])[0] for c, a in items]
    shared = len(shared_prefixes(prompts, [0] * 4)[0])
    assert shared > 40
    st, per_pass = cached.stats(), sum(map(len, prompts))
    assert st["tokens_computed"] == 2 * (per_pass - 3 * shared)  # adapter off and on
    assert st["tokens_reused"] == 2 * 4 * shared


def test_reference_pass_reuses_the_policys_prefix(dirs: dict[str, Path]) -> None:
    """Same base checkpoint: the Q-model's adapter-off namespace is the policy's."""
    cache = PrefixCache("64MiB")
    pmodel, ptok = load_causal_lm(str(dirs["base"]), device="cpu", dtype="float32")
    policy = LocalProposer(pmodel, ptok, prefix_cache=cache, seed=1)
    scorer = QValueScorer.from_pretrained(dirs["q"], device="cpu", prefix_cache=cache)
    assert model_namespace(pmodel) == model_namespace(scorer.model, adapter=False)
    assert model_namespace(pmodel) != model_namespace(scorer.model, adapter=True)
    plain = QValueScorer.from_pretrained(dirs["q"], device="cpu", prefix_cache=False)
    ctx = episode(3)[-1]
    policy.propose(ctx, 2, valid_actions=VALID)
    got = scorer.score(ctx, [*VALID[1:3], "click[not offered]"])
    want = plain.score(ctx, [*VALID[1:3], "click[not offered]"])
    assert max(abs(x - y) for x, y in zip(got, want, strict=True)) < 1e-4
    st = scorer.stats()
    # adapter on: a miss; adapter off: the two valid actions' log-probs are the policy's own
    # (no model run for them), the third runs after the policy's prompt, all but its last token
    prompt = tokenize_for_scoring(scorer.tokenizer, ctx, "x")[0]
    assert st["actions_reused"] == 2
    assert st["lookups"] == 2 and st["hits"] == 1
    assert st["tokens_reused"] == len(prompt) - 1
    # every action stored: the same reference pass again runs nothing
    before = scorer.stats()["lookups"]
    with adapter_disabled(scorer.model):
        prefix_shared_logprobs(
            scorer.model,
            scorer.tokenizer,
            [(ctx, VALID[1:3])],
            cache=cache,
            namespace=model_namespace(scorer.model, adapter=False),
        )
    assert scorer.stats()["lookups"] == before and cache.totals.actions_reused == 4


# -- sampling ------------------------------------------------------------------------------
def test_same_samples_for_the_same_seed(dirs: dict[str, Path]) -> None:
    model, tok = load_causal_lm(str(dirs["base"]), device="cpu", dtype="float32")
    kw: dict[str, Any] = {"seed": 7, "max_new_tokens": 6, "temperature": 1.0}
    a = LocalProposer(model, tok, prefix_cache=PrefixCache("64MiB"), **kw)
    b = LocalProposer(model, tok, prefix_cache=False, **kw)
    for t, ctx in enumerate(episode(4)):
        for valid in (None, VALID):
            ca, cb = a.propose(ctx, 3, valid_actions=valid), b.propose(ctx, 3, valid_actions=valid)
            assert [c.text for c in ca] == [c.text for c in cb], (t, valid)
            for x, y in zip(ca, cb, strict=True):
                assert x.logprob is not None and y.logprob is not None
                assert abs(x.logprob - y.logprob) < 1e-4
            if valid:  # constrained requests now count what they computed
                assert (cb[0].tokens or 0) > 0
                assert (ca[0].tokens or 0) < (cb[0].tokens or 0) or t == 0
    assert a.stats()["tokens_reused"] > 0 and b.stats()["cache"] is None


def test_chat_model_generate_same_with_and_without_cache(dirs: dict[str, Path]) -> None:
    pytest.importorskip("langchain_core")
    from agentq.integrations.chat_model import LocalChatModel
    from langchain_core.messages import convert_to_messages

    model, tok = load_causal_lm(str(dirs["base"]), device="cpu", dtype="float32")
    kw: dict[str, Any] = {"temperature": 1.0, "max_new_tokens": 5, "n": 3, "seed": 3}
    on = LocalChatModel.from_pretrained_objects(model, tok, **kw)
    off = LocalChatModel.from_pretrained_objects(model, tok, prefix_cache=False, **kw)
    for ctx in episode(3):
        msgs = convert_to_messages([(m["role"], m["content"]) for m in ctx])
        ga = on.generate([msgs]).generations[0]
        gb = off.generate([msgs]).generations[0]
        assert [g.text for g in ga] == [g.text for g in gb]


def test_reward_model_values_same_with_and_without_cache(dirs: dict[str, Path]) -> None:
    from agentq.models.reward import ToolAugmentedRewardModel

    lm, tok = load_causal_lm(str(dirs["base"]), device="cpu", dtype="float32")
    on = ToolAugmentedRewardModel(lm, tok, prefix_cache=PrefixCache("16MiB"))
    off = ToolAugmentedRewardModel(lm, tok, value_head=on.value_head, prefix_cache=False)
    items = [("What is 12 * 7?", a) for a in ("84", "The answer is 84.", "82", "eighty-four")]
    for _ in range(2):  # the second call reuses the first's prefixes
        a = on.score_items(items, trace="none")
        b = off.score_items(items, trace="none")
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4
    assert on.cache_stats.hits == len(items) and on.cache_stats.tokens_reused > 1000


# -- bounded, concurrent -------------------------------------------------------------------
def test_eviction_keeps_bytes_within_budget(dirs: dict[str, Path]) -> None:
    model, tok = load_causal_lm(str(dirs["base"]), device="cpu", dtype="float32")
    # the tiny model stores 2 layers x 2 (k, v) x 2 heads x 8 dims x 4 bytes = 256 B per token
    budget = 256 * 150
    cache = PrefixCache(budget)
    for k in range(6):
        ctxs = episode(3, obs_len=2 + k)
        items = [(c, actions(t)) for t, c in enumerate(ctxs)]
        a = prefix_shared_logprobs(model, tok, items, cache=cache)
        b = naive_logprobs(model, tok, items)
        for ra, rb in zip(a, b, strict=True):
            assert _max_diff(ra, rb) < 1e-4
        assert cache.bytes <= budget
    st = cache.stats()
    assert st["evictions"] > 0 and st["peak_bytes"] <= budget and st["bytes"] <= budget
    # an entry larger than the whole budget is not kept, and still scores correctly
    tiny = PrefixCache(256 * 10)
    long_ctx = episode(4)[-1]
    a = prefix_shared_logprobs(model, tok, [(long_ctx, ["x"])], cache=tiny)
    assert _max_diff(a[0], naive_logprobs(model, tok, [(long_ctx, ["x"])])[0]) < 1e-4
    assert tiny.bytes == 0


def test_radix_tree_under_concurrent_threads() -> None:
    """Many threads match and insert random, overlapping prompts; KV always matches its key."""
    import torch

    budget = 4 * 2 * 64 * 300  # (k, v) x 2 layers x 64 bytes/token x 300 tokens

    def kv_for(tokens: list[int]) -> list[tuple[Any, Any]]:
        t = torch.tensor(tokens, dtype=torch.float32).view(1, 1, -1, 1).expand(1, 1, -1, 8)
        return [(t.clone(), -t.clone()) for _ in range(2)]

    cache = PrefixCache(budget)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(150):
                head = [1, 2, 3] + [rng.randrange(4)] * rng.randrange(1, 6)
                toks = head + [rng.randrange(50) for _ in range(rng.randrange(1, 40))]
                n, kv = cache.match("ns", toks)
                if n:
                    assert kv is not None
                    assert kv[0][0][0, 0, :, 0].tolist() == [float(x) for x in toks[:n]]
                    assert kv[1][1][0, 0, :, 0].tolist() == [-float(x) for x in toks[:n]]
                full = kv_for(toks)
                cache.insert(
                    "ns", toks, lambda s, e, f=full: [(k[:, :, s:e], v[:, :, s:e]) for k, v in f]
                )
                assert cache.bytes <= budget
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    st = cache.stats()
    assert st["hits"] == 0  # match() does not count; consumers record
    assert 0 < cache.bytes <= budget and st["peak_bytes"] <= budget and st["evictions"] > 0


def test_scorers_share_a_cache_across_threads(dirs: dict[str, Path]) -> None:
    cache = PrefixCache("64MiB")
    a = QValueScorer.from_pretrained(dirs["q"], device="cpu", prefix_cache=cache)
    b = QValueScorer.from_pretrained(dirs["q"], device="cpu", prefix_cache=cache)
    plain = QValueScorer.from_pretrained(dirs["q"], device="cpu", prefix_cache=False)
    eps = episode(5)
    want = [plain.score(c, actions(t)) for t, c in enumerate(eps)]
    got: dict[tuple[int, int], list[float]] = {}

    def run(k: int, s: QValueScorer) -> None:
        for t, c in enumerate(eps):
            got[(k, t)] = s.score(c, actions(t))

    threads = [threading.Thread(target=run, args=(k, (a, b)[k % 2])) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (_, t), v in got.items():
        assert max(abs(x - y) for x, y in zip(v, want[t], strict=True)) < 1e-4
    assert len(got) == 4 * len(eps)


# -- visible, bad input --------------------------------------------------------------------
def test_server_stats_and_health(dirs: dict[str, Path]) -> None:
    from agentq.integrations.server import BackgroundServer, RemoteScorer, create_app

    s = QValueScorer.from_pretrained(dirs["q"], device="cpu", prefix_cache=PrefixCache("8MiB"))
    with BackgroundServer(create_app(s), log_level="warning") as srv:
        client = RemoteScorer(srv.url)
        for t, c in enumerate(episode(3)):
            client.score(c, actions(t))
        st = client.stats()["prefix_cache"]
        health = client.health()
        client.close()
    assert st["hits"] >= 2 and st["tokens_reused"] > 0
    assert 0 < st["cache"]["bytes"] <= st["cache"]["budget_bytes"] == 8 * 1024**2
    assert health["prefix_cache"]["hit_rate"] > 0


def test_bad_cache_budget_is_one_error_line_and_exit_2(dirs: dict[str, Path]) -> None:
    from agentq.cli import app

    runner = CliRunner()
    for args in (
        ["serve", "--qmodel", str(dirs["q"]), "--cache-bytes", "0"],
        ["serve", "--qmodel", str(dirs["q"]), "--cache-bytes", "a lot"],
        ["eval", "--env", "toy", "--cache-bytes", "-1MiB", "--out", str(dirs["base"] / "r")],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "positive size" in lines[0]
    with pytest.raises(UserInputError):
        QValueScorer.from_pretrained(dirs["q"], device="cpu", cache_bytes="0")


def test_a_model_in_training_mode_is_never_cached(dirs: dict[str, Path]) -> None:
    """Dropout on: outputs differ run to run, so neither KV nor scored actions are stored."""
    model, tok = load_causal_lm(str(dirs["base"]), device="cpu", dtype="float32")
    cache = PrefixCache("64MiB")
    model.train()
    try:
        prefix_shared_logprobs(model, tok, [(TASK, VALID)], cache=cache)
    finally:
        model.eval()
    assert cache.totals.lookups == 0 and cache.bytes == 0
    assert cache.stats()["action_entries"] == 0
    prefix_shared_logprobs(model, tok, [(TASK, VALID)], cache=cache)
    assert cache.totals.lookups == 1 and cache.stats()["action_entries"] == len(VALID)


# -- layers below the adapter: computed once for both adapter states ----------------------
@pytest.fixture(scope="module")
def upper_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("upper")
    base = save_tiny_model(root / "base", num_layers=4)
    q = save_tiny_qmodel(root / "q", base, beta=0.5, layers=[2, 3])
    return {"base": base, "q": q}


@pytest.mark.parametrize("max_length", [None, 150])
def test_adapter_on_pass_runs_only_the_adapted_layers(
    upper_dirs: dict[str, Path], max_length: int | None
) -> None:
    """LoRA in layers 2-3 only: the adapter-on prefill starts at layer 2 from the stored
    states, and every score equals the uncached (and naive) one."""
    from agentq.models.shared_layers import adapter_free_layers

    cache = PrefixCache("64MiB")
    cached = QValueScorer.from_pretrained(
        upper_dirs["q"], device="cpu", prefix_cache=cache, max_length=max_length
    )
    plain = QValueScorer.from_pretrained(
        upper_dirs["q"], device="cpu", prefix_cache=False, max_length=max_length
    )
    assert cached.lower_layers == adapter_free_layers(cached.model) == 2
    eps = episode(6)
    for t, ctx in enumerate(eps):
        acts = actions(t)
        got, want = cached.score(ctx, acts), plain.score(ctx, acts)
        assert max(abs(x - y) for x, y in zip(got, want, strict=True)) < 1e-4
        naive = cached.score_naive(ctx, acts)
        assert max(abs(x - y) for x, y in zip(got, naive, strict=True)) < 1e-4
    # a batch whose rows have different cached lengths, one of them a new task
    items = [(eps[2], actions(2)), (eps[5], actions(5)), ([TASK[1]], ["click[a]"])]
    got_b, want_b = cached.score_batch(items), plain.score_batch(items)
    for ra, rb in zip(got_b, want_b, strict=True):
        assert max((abs(x - y) for x, y in zip(ra, rb, strict=True)), default=0.0) < 1e-4
    st = cached.stats()
    assert st["upper_tokens"] > 0 and st["upper_tokens"] <= st["tokens_computed"]
    # the adapter-on candidates ran from the states the reference pass kept for them
    assert 0 < st["upper_candidates"] <= st["candidate_tokens"] / 2


def test_policy_first_then_adapter_on_from_its_states(upper_dirs: dict[str, Path]) -> None:
    """The policy on the base checkpoint stores the states entering the first adapted layer;
    the Q-model's adapter-on prefill reads them (and its reference pass reads the policy's
    action log-probs), with the same scores."""
    cache = PrefixCache("64MiB")
    scorer = QValueScorer.from_pretrained(upper_dirs["q"], device="cpu", prefix_cache=cache)
    plain = QValueScorer.from_pretrained(upper_dirs["q"], device="cpu", prefix_cache=False)
    pmodel, ptok = load_causal_lm(str(upper_dirs["base"]), device="cpu", dtype="float32")
    policy = LocalProposer(pmodel, ptok, prefix_cache=cache, seed=1)
    for ctx in episode(3):
        policy.propose(ctx, 2, valid_actions=VALID)
        before = scorer.stats()
        got = scorer.score(ctx, VALID[1:3])
        want = plain.score(ctx, VALID[1:3])
        assert max(abs(x - y) for x, y in zip(got, want, strict=True)) < 1e-4
        after = scorer.stats()
        prompt = tokenize_for_scoring(scorer.tokenizer, ctx, "x")[0]
        new = after["tokens_computed"] - before["tokens_computed"]
        # the reference pass runs no model (the policy scored these actions); the adapter-on
        # prefill computes its new tokens in the adapted layers only
        assert after["upper_tokens"] - before["upper_tokens"] == new
        assert 0 < new <= len(prompt)
        assert after["actions_reused"] - before["actions_reused"] == 2
        # ... and its candidates from the states the policy kept when it scored them
        ran = after["candidate_tokens"] - before["candidate_tokens"]
        assert after["upper_candidates"] - before["upper_candidates"] == ran > 0


def test_two_q_models_on_one_base_with_different_adapted_layers(
    upper_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """Each keeps the states entering its own first adapted layer; neither reads the other's."""
    top = save_tiny_qmodel(tmp_path / "top", upper_dirs["base"], beta=0.5, layers=[3], seed=3)
    cache = PrefixCache("64MiB")
    scorers = [
        QValueScorer.from_pretrained(d, device="cpu", prefix_cache=cache)
        for d in (upper_dirs["q"], top)
    ]
    plains = [
        QValueScorer.from_pretrained(d, device="cpu", prefix_cache=False)
        for d in (upper_dirs["q"], top)
    ]
    assert [s.lower_layers for s in scorers] == [2, 3]
    for t, ctx in enumerate(episode(3)):
        for s, p in zip(scorers, plains, strict=True):
            got, want = s.score(ctx, actions(t)), p.score(ctx, actions(t))
            assert max(abs(x - y) for x, y in zip(got, want, strict=True)) < 1e-4
    assert all(s.stats()["upper_candidates"] > 0 for s in scorers)


# -- N samples decoded against one copy of the prompt ----------------------------------------
@pytest.mark.parametrize(
    ("heads", "kv_heads", "q", "dtype"),
    [(4, 4, 1, "float32"), (6, 2, 1, "float32"), (6, 3, 3, "float32"), (6, 2, 3, "bfloat16")],
)
def test_shared_prefix_attention_equals_per_row_attention(
    heads: int, kv_heads: int, q: int, dtype: str
) -> None:
    """The two-part attention against per-row SDPA, also in bf16 (as a GPU runs it)."""
    import torch

    from agentq.models.shared_prefix_decoding import shared_prefix_attention

    g = torch.Generator().manual_seed(0)
    rows, d, plen, own = 3, 8, 11, 4
    dt = getattr(torch, dtype)
    query = torch.randn(rows, heads, q, d, generator=g).to(dt)
    pk, pv = (torch.randn(1, kv_heads, plen, d, generator=g).to(dt) for _ in range(2))
    k, v = (torch.randn(rows, kv_heads, own, d, generator=g).to(dt) for _ in range(2))
    got = shared_prefix_attention(query, k, v, pk, pv, scaling=0.3)
    assert got.dtype == dt
    # the plain computation: every row's own copy of the prompt, causal over its own tokens
    full_k = torch.cat([pk.expand(rows, -1, -1, -1), k], 2).repeat_interleave(heads // kv_heads, 1)
    full_v = torch.cat([pv.expand(rows, -1, -1, -1), v], 2).repeat_interleave(heads // kv_heads, 1)
    allowed = torch.ones(q, plen + own, dtype=torch.bool)
    for i in range(q):
        allowed[i, plen + own - q + i + 1 :] = False
    want = torch.nn.functional.scaled_dot_product_attention(
        query, full_k, full_v, attn_mask=allowed, scale=0.3
    ).transpose(1, 2)
    assert got.shape == (rows, q, heads, d)
    assert torch.allclose(got.float(), want.float(), atol=1e-5 if dtype == "float32" else 2e-2)


def test_samples_decode_against_one_copy_of_the_prompt(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentq.models import shared_prefix_decoding as spd
    from agentq.models.prefix_cache import cached_generate

    model, tok = load_causal_lm(str(dirs["base"]), device="cpu", dtype="float32")
    assert spd.supported(model)
    prompt = tokenize_for_scoring(tok, episode(3)[-1], "x")[0]
    kw: dict[str, Any] = {"max_new_tokens": 5, "do_sample": True, "top_k": 0, "pad_token_id": 0}
    calls: list[int] = []
    two_part = spd.shared_prefix_attention
    monkeypatch.setattr(
        spd, "shared_prefix_attention", lambda *a, **k: calls.append(1) or two_part(*a, **k)
    )
    runs = []
    for cache in (PrefixCache("64MiB"), None):
        import torch

        torch.manual_seed(5)
        out = cached_generate(model, prompt, 4, cache=cache, **kw)
        runs.append((out.sequences.tolist(), cache))
    (shared, cache), (plain, _) = runs
    assert shared == plain
    layers = model.config.num_hidden_layers
    assert len(calls) == 5 * layers  # every generated token, every layer: the two-part path
    assert cache is not None and cache.cached_length(model_namespace(model), prompt) == len(prompt)
    # other attention calls in the process go to sdpa unchanged
    assert getattr(spd._handoff, "prefix", None) is None


def test_samples_when_the_budget_cannot_hold_the_prompt(dirs: dict[str, Path]) -> None:
    import torch

    from agentq.models.prefix_cache import cached_generate

    model, tok = load_causal_lm(str(dirs["base"]), device="cpu", dtype="float32")
    prompt = tokenize_for_scoring(tok, episode(3)[-1], "x")[0]
    kw: dict[str, Any] = {"max_new_tokens": 4, "do_sample": True, "top_k": 0, "pad_token_id": 0}
    runs = []
    for cache in (PrefixCache(1024), None):  # 1 KiB: nothing is stored, the prefill's KV serves
        torch.manual_seed(9)
        runs.append(cached_generate(model, prompt, 3, cache=cache, **kw).sequences.tolist())
    assert runs[0] == runs[1]
