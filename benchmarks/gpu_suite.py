"""Every GPU measurement of agentq in one run, printed as one table (driven by gpu_suite.sh).

Sections (each bounded by a share of ``--budget-s``; a section that fails, runs out of time or
lacks a package prints its reason in the table instead of numbers, and the run goes on):

1. **Scoring**: Q-value scoring of N candidates, candidates per second, at SmolLM2-135M and at
   a larger model (a random LoRA adapter makes policy and reference differ):
   ``prefix-shared`` (:func:`agentq.models.scorer.score_items`), ``naive`` (one full sequence
   per candidate), ``naive batched`` (all full sequences of a context in padded batches), and
   the same across ``--contexts-batch`` contexts at once (prefix-shared batches across
   contexts when the candidates alone are too few to fill the GPU). The larger model is the
   largest local checkpoint that fits the GPU (searched in the Hugging Face cache), or with
   ``--offline`` the ``--large-config`` architecture.
2. **Prefix cache**: an episode of WebShop and one of tool use, cached against uncached
   (:mod:`benchmarks.bench_cache`): prefill tokens and wall seconds; the server step rate
   with multi-step clients.
3. **Server batching**: ``agentq serve`` with dynamic batching against batch size 1
   (:mod:`benchmarks.bench_server`'s load generator), requests per second.

``--offline`` (the lent GPU machine: torch and transformers, no network, no hub, no HF cache)
builds every model with random weights from a config (:mod:`benchmarks.offline_models`):
timings depend on the architecture and the token counts, not on weight values.
SmolLM2-135M's architecture (``benchmarks/configs/smollm2-135m.json``) stands for SmolLM2 and
the shipped Q-model's base, ``--large-config`` (default ``llama-3.2-1b``; also
``llama-3.2-3b`` or a path to a config.json) for the larger model. The prefix-cache episodes
are then synthetic (:class:`offline_models.SyntheticEpisode`: WebShop-shaped, constrained over
10 valid actions, and tool-use-shaped, free generation of exactly ``--max-new-tokens``
tokens), since WebShop needs its search packages. The server sections need fastapi, starlette,
pydantic, uvicorn and httpx; where they are missing they print "skipped: missing ..." (the
wheels to carry are listed in gpu_suite.sh).

``--quick`` runs every section at tiny sizes on the CPU (tiny random Llamas, short contexts,
two steps, a few requests): a check that the suite works, not a measurement.

Targets (the issue's): prefix-shared never slower than naive batched at any size; server
batching at least 3x batch size 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from checkout_imports import ensure_agentq_importable  # noqa: E402

ROWS: list[tuple[str, str, str]] = []  # (section, what, result)
SERVER_MODULES = ("fastapi", "starlette", "pydantic", "uvicorn", "httpx")
"""What ``agentq serve`` and its load generator import (besides torch and transformers)."""


def row(section: str, what: str, result: str) -> None:
    ROWS.append((section, what, result))
    print(f"  [{section}] {what}: {result}", flush=True)


def missing(modules: tuple[str, ...] | list[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported here."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def skipped_for(modules: list[str]) -> str:
    return f"skipped: missing {', '.join(modules)} (carry their wheels: see gpu_suite.sh)"


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def largest_local_checkpoint(gpu_bytes: int) -> Path | None:
    """The biggest causal-LM snapshot in the HF cache whose weights fit in half the GPU."""
    roots = [Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"]
    if os.environ.get("HF_HUB_CACHE"):
        roots.insert(0, Path(os.environ["HF_HUB_CACHE"]))
    best: tuple[int, Path] | None = None
    for root in roots:
        for cfg in root.glob("models--*/snapshots/*/config.json"):
            d = cfg.parent
            size = sum(f.stat().st_size for f in d.glob("*.safetensors"))
            try:
                doc = json.loads(cfg.read_text())
            except (OSError, ValueError):
                continue
            arch = " ".join(doc.get("architectures") or [])
            if size and "CausalLM" in arch and size * 2 < gpu_bytes:
                if best is None or size > best[0]:
                    best = (size, d)
    return best[1] if best else None


def with_random_adapter(model: Any, tok: Any) -> Any:
    """``model`` wrapped in a peft model with a random LoRA adapter (policy != reference)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from agentq.models.tiny import CHATML_TEMPLATE

    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    peft = get_peft_model(model, cfg)
    peft.eval()
    return peft


def qmodel_on(spec: str, device: str) -> tuple[Any, Any]:
    """(peft model with a random LoRA adapter, tokenizer) on the checkpoint ``spec``."""
    from agentq.models.loading import load_causal_lm

    model, tok = load_causal_lm(spec, device=device)
    return with_random_adapter(model, tok), tok


def random_qmodel(config: str, device: str) -> tuple[Any, Any]:
    """(peft model with a random LoRA adapter, tokenizer) on random weights of ``config``."""
    from offline_models import load_config, random_model

    model, tok = random_model(load_config(config), device)
    return with_random_adapter(model, tok), tok


LOGITS_BYTES = 8 * 2**30
"""Naive batching's bound on the logits of one padded batch (bf16 and their fp32 copy)."""


def naive_batched(model: Any, tok: Any, items: list[Any], max_tokens: int = 65536) -> None:
    """Every candidate's full sequence, both adapter states, in padded batches of at most
    ``max_tokens`` tokens (fewer for a large vocabulary: full logits of every position)."""
    import torch

    from agentq.models.scorer import adapter_disabled, encode_items

    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    if vocab:
        max_tokens = max(1, min(max_tokens, LOGITS_BYTES // (6 * vocab)))
    seqs = [p + a for row_ in encode_items(tok, items, None) for p, a in row_]
    device = next(model.parameters()).device
    pad = tok.pad_token_id or 0

    def run() -> None:
        i = 0
        while i < len(seqs):
            width = max(len(s) for s in seqs[i : i + 1])
            k = max(1, max_tokens // width)
            chunk = seqs[i : i + k]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(chunk):
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
            model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            i += len(chunk)

    with torch.inference_mode():
        run()
        with adapter_disabled(model):
            run()


def timed(fn: Any, reps: int = 2) -> float:
    fn()  # warm-up
    sync()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def scoring_section(name: str, loaded: Any, args: argparse.Namespace, deadline: float) -> None:
    """``loaded()`` gives (peft model, tokenizer)."""
    import random

    from bench_scoring import make_action, make_context

    from agentq.models.scorer import score_items

    if missing(["peft"]):
        row("scoring", name, skipped_for(missing(["peft"])))
        return
    model, tok = loaded()
    rng = random.Random(0)
    kw: dict[str, Any] = {"beta": 0.1}
    for length in args.context_tokens:
        if time.time() > deadline:
            row("scoring", f"{name} ctx {length}", "skipped: section time is up")
            continue
        ctxs = [make_context(tok, length, rng) for _ in range(args.contexts_batch)]
        for n in args.n:
            acts = [make_action(tok, ctxs[0], args.action_tokens, rng) for _ in range(n)]
            one = [(ctxs[0], acts)]
            many = [(c, acts) for c in ctxs]
            t_shared = timed(lambda one=one: score_items(model, tok, one, **kw))
            t_naive = timed(lambda one=one: score_items(model, tok, one, naive=True, **kw), 1)
            t_nb = timed(lambda one=one: naive_batched(model, tok, one))
            t_shared_m = timed(lambda many=many: score_items(model, tok, many, **kw))
            t_nb_m = timed(lambda many=many: naive_batched(model, tok, many))
            ok = "ok" if t_shared <= t_nb * 1.05 and t_shared_m <= t_nb_m * 1.05 else "SLOWER"
            row(
                "scoring",
                f"{name} ctx {length} N={n}",
                f"cand/s shared {n / t_shared:.0f}, naive {n / t_naive:.0f}, "
                f"naive batched {n / t_nb:.0f}; x{len(many)} contexts: shared "
                f"{n * len(many) / t_shared_m:.0f}, naive batched {n * len(many) / t_nb_m:.0f} "
                f"[{ok}]",
            )


def offline_qmodel(args: argparse.Namespace) -> tuple[str, Path]:
    """(base directory, Q-model directory) with random weights of ``--small-config``, written
    once under ``args.tmp``: a random LoRA adapter, the shipped Q-model's max length."""
    from bench_cache import QMODEL
    from offline_models import load_config, save_random_model

    from agentq.models.tiny import save_tiny_qmodel

    base, q = Path(args.tmp) / "base", Path(args.tmp) / "q"
    if not (q / "qmodel.json").exists():
        try:
            shipped = json.loads((QMODEL / "qmodel.json").read_text())
        except (OSError, ValueError):
            shipped = {}
        save_random_model(load_config(args.small_config), base, new_tokens=args.max_new_tokens)
        save_tiny_qmodel(
            q,
            base,
            max_length=int(shipped.get("max_length") or 512),
            lora_r=int((shipped.get("lora") or {}).get("r") or 8),
        )
    return str(base), q


EPISODES: dict[str, dict[str, int]] = {
    "webshop-shaped": {"task_tokens": 200, "obs_tokens": 250, "valid": 10},
    "tooluse-shaped": {"task_tokens": 300, "obs_tokens": 120, "valid": 0},
}
"""--offline's synthetic episodes (:class:`offline_models.SyntheticEpisode`): WebShop-shaped
(the policy scores 10 valid actions) and tool-use-shaped (free generation, fixed length)."""
QUICK_EPISODES: dict[str, dict[str, int]] = {
    "webshop-shaped": {"task_tokens": 60, "obs_tokens": 40, "valid": 3},
    "tooluse-shaped": {"task_tokens": 60, "obs_tokens": 30, "valid": 0},
}


def cache_section(args: argparse.Namespace) -> None:
    import bench_cache
    from offline_models import SyntheticEpisode

    from agentq.models.prefix_cache import PrefixCache

    if missing(["peft"]):
        row("cache", "section", skipped_for(missing(["peft"])))
        return
    ns = argparse.Namespace(
        n=args.cache_n,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        seed=0,
        quick=args.quick,
        clients=args.clients,
    )
    cache = PrefixCache(args.cache_bytes)
    runs: list[tuple[str, int, dict[str, int] | None]]
    if args.offline:
        base, qdir = offline_qmodel(args)
        on = bench_cache.load(base, qdir, cache, ns, stop=[])
        off = bench_cache.load(base, qdir, None, ns, stop=[])
        shapes = QUICK_EPISODES if args.quick else EPISODES
        runs = [
            (name, args.webshop_steps if "webshop" in name else args.tooluse_steps, shape)
            for name, shape in shapes.items()
        ]
    else:
        on = bench_cache.load("smollm2", bench_cache.QMODEL, cache, ns)
        off = bench_cache.load("smollm2", bench_cache.QMODEL, None, ns)
        runs = [("webshop", args.webshop_steps, None), ("tooluse", args.tooluse_steps, None)]
    ws = None
    for env, steps, shape in runs:
        env_a = SyntheticEpisode(**shape) if shape else None
        env_b = SyntheticEpisode(**shape) if shape else None
        a = bench_cache.episode(env, steps, *on, ns, env=env_a)
        b = bench_cache.episode(env, steps, *off, ns, replay=a["actions"], env=env_b)
        ws = ws or a
        row(
            "cache",
            f"{env} episode ({a['steps']} steps)",
            f"prefill tokens {a['prefill']} vs {b['prefill']} "
            f"({b['prefill'] / max(a['prefill'], 1):.2f}x fewer), wall {a['wall_s']:.2f}s vs "
            f"{b['wall_s']:.2f}s ({b['wall_s'] / max(a['wall_s'], 1e-9):.2f}x)",
        )
    assert ws is not None
    what = f"server, {args.clients} multi-step clients"
    lacking = missing(SERVER_MODULES)
    if lacking:
        row("cache", what, skipped_for(lacking))
    else:
        acts = list(dict.fromkeys(ws["actions"]))[: args.cache_n]
        cache.clear()
        r_on, b_on = bench_cache.serve_rate(on[1], ws["contexts"], acts, args.clients)
        r_off, b_off = bench_cache.serve_rate(off[1], ws["contexts"], acts, args.clients)
        row(
            "cache",
            what,
            f"{r_on:.1f} vs {r_off:.1f} steps/s ({r_on / r_off:.2f}x; mean batch "
            f"{b_on:.1f} vs {b_off:.1f})",
        )
    row("cache", "peak bytes / budget", f"{cache.peak_bytes} / {cache.max_bytes}")


def server_section(args: argparse.Namespace) -> None:
    lacking = missing([*SERVER_MODULES, "peft"])
    if lacking:
        row("server", "section", skipped_for(lacking))
        return
    import bench_server

    from agentq.models.scorer import QValueScorer

    if args.offline:
        _, qdir = offline_qmodel(args)
        label_model = f"{args.small_config} (random weights) Q-model"
    else:
        qdir = Path(__file__).resolve().parents[1] / "agentq/eval/assets/qmodel_webshop"
        label_model = "SmolLM2 Q-model"
    scorer = QValueScorer.from_pretrained(str(qdir), device=args.device, prefix_cache=False)
    ns = argparse.Namespace(
        contexts=args.server_contexts, clients=args.server_clients, requests=args.server_requests
    )
    for label in args.server_workloads:
        on = bench_server.run_server(scorer, label, ns, max_batch=64, batch_window_ms=5.0)
        off = bench_server.run_server(scorer, label, ns, max_batch=1, batch_window_ms=0.0)
        ratio = on["rps"] / off["rps"]
        row(
            "server",
            f"{label_model}, {label} contexts",
            f"req/s batching {on['rps']:.0f} (mean batch {on['batch']:.1f}) vs batch 1 "
            f"{off['rps']:.0f}: {ratio:.2f}x [{'ok' if ratio >= 3 else 'BELOW 3x'}]",
        )


QUICK = {
    "device": "cpu",
    "budget_s": 120.0,
    "context_tokens": [96],
    "n": [2],
    "contexts_batch": 2,
    "action_tokens": 6,
    "small_config": "tiny",
    "large_config": "tiny-large",
    "cache_bytes": "16MiB",
    "cache_n": 2,
    "max_new_tokens": 4,
    "webshop_steps": 2,
    "tooluse_steps": 2,
    "clients": 2,
    "server_contexts": 4,
    "server_clients": 4,
    "server_requests": 8,
    "server_workloads": ["short"],
}
"""What ``--quick`` sets (every section at tiny sizes on the CPU)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=450.0, help="Whole run, seconds.")
    ap.add_argument("--context-tokens", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--n", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--contexts-batch", type=int, default=8)
    ap.add_argument("--action-tokens", type=int, default=32, help="Tokens per scored action.")
    ap.add_argument("--cache-bytes", default="4GiB")
    ap.add_argument("--cache-n", type=int, default=5, help="Candidates per cache-episode step.")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="Free generation length.")
    ap.add_argument("--webshop-steps", type=int, default=6)
    ap.add_argument("--tooluse-steps", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8, help="Multi-step clients (cache section).")
    ap.add_argument("--server-contexts", type=int, default=32)
    ap.add_argument("--server-clients", type=int, default=64)
    ap.add_argument("--server-requests", type=int, default=256)
    ap.add_argument(
        "--server-workloads", nargs="+", default=["short", "toy with history"], help="Contexts."
    )
    ap.add_argument("--skip", nargs="*", default=[], help="scoring, large, cache, server")
    ap.add_argument(
        "--offline",
        action="store_true",
        help="Random weights from configs (no hub, no HF cache); synthetic cache episodes.",
    )
    ap.add_argument("--small-config", default="smollm2-135m", help="--offline: the 135M model.")
    ap.add_argument(
        "--large-config",
        default="llama-3.2-1b",
        help="--offline: the larger model (a name in benchmarks/configs or a config.json path).",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="Every section at tiny sizes on the CPU (implies --offline): a smoke test.",
    )
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
        args.offline = True
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_agentq_importable()
    import torch

    from agentq.models.prefix_cache import parse_cache_bytes

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "error: no CUDA device (gpu_suite needs a GPU; --quick runs on the CPU)",
            file=sys.stderr,
        )
        sys.exit(2)
    if args.offline:
        from offline_models import load_config

        try:
            for c in (args.small_config, args.large_config):
                load_config(c)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    args.cache_bytes = parse_cache_bytes(args.cache_bytes)
    cuda = args.device.startswith("cuda")
    gpu = torch.cuda.get_device_properties(0).total_memory if cuda else 0
    start = time.time()
    shares = {"scoring": 0.2, "large": 0.25, "cache": 0.35, "server": 0.2}
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        plan: list[tuple[str, Any]] = []

        def add_scoring(section: str, label: str, load: Any) -> None:
            """Plan a scoring section on the model ``load()`` builds."""
            plan.append((section, lambda d: scoring_section(label, load, args, d)))

        if "scoring" not in args.skip:
            if args.offline:
                add_scoring(
                    "scoring",
                    f"{args.small_config} (random weights)",
                    lambda: random_qmodel(args.small_config, args.device),
                )
            else:
                add_scoring("scoring", "SmolLM2-135M", lambda: qmodel_on("smollm2", args.device))
        if "large" not in args.skip:
            if args.offline:
                add_scoring(
                    "large",
                    f"{Path(args.large_config).stem} (random weights)",
                    lambda: random_qmodel(args.large_config, args.device),
                )
            else:
                big = largest_local_checkpoint(gpu)
                if big is None:
                    row("scoring", "largest local checkpoint", "none found in the HF cache")
                else:
                    add_scoring(
                        "large", big.parts[-3], lambda b=big: qmodel_on(str(b), args.device)
                    )
        if "cache" not in args.skip:
            plan.append(("cache", lambda d: cache_section(args)))
        if "server" not in args.skip:
            plan.append(("server", lambda d: server_section(args)))
        for name, fn in plan:
            deadline = time.time() + shares[name] * args.budget_s
            if time.time() - start > args.budget_s:
                row(name, "section", "skipped: the run's time is up")
                continue
            try:
                fn(deadline)
            except Exception as e:  # noqa: BLE001 - one failing section must not lose the table
                traceback.print_exc(file=sys.stderr)
                row(name, "section", f"failed: {type(e).__name__}: {str(e).splitlines()[:1]}")
            if cuda:
                torch.cuda.empty_cache()
    where = torch.cuda.get_device_name(0) if cuda else "cpu"
    mode = (
        " (--quick: tiny random models, a smoke test)"
        if args.quick
        else (" (--offline: random weights)" if args.offline else "")
    )
    print(f"\nagentq GPU suite on {where}{mode}, {time.time() - start:.0f} s\n")
    print("| section | measurement | result |")
    print("|---|---|---|")
    for section, what, result in ROWS:
        print(f"| {section} | {what} | {result} |")


if __name__ == "__main__":
    main()
