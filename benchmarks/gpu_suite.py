"""Every GPU measurement of agentq in one run, printed as one table (driven by gpu_suite.sh).

Sections (each bounded by a share of ``--budget-s``; a section that fails or runs out of time
prints its reason in the table instead of numbers, and the run goes on):

1. **Scoring**: Q-value scoring of N candidates, candidates per second, at SmolLM2-135M and at
   the largest local checkpoint that fits the GPU (searched in the Hugging Face cache; a
   random LoRA adapter makes policy and reference differ):
   ``prefix-shared`` (:func:`agentq.models.scorer.score_items`), ``naive`` (one full sequence
   per candidate), ``naive batched`` (all full sequences of a context in padded batches), and
   the same across ``--contexts-batch`` contexts at once (prefix-shared batches across
   contexts when the candidates alone are too few to fill the GPU).
2. **Prefix cache**: a WebShop episode and a tool-use episode, cached against uncached
   (:mod:`benchmarks.bench_cache`): prefill tokens and wall seconds; the server step rate.
3. **Server batching**: ``agentq serve`` with dynamic batching against batch size 1
   (:mod:`benchmarks.bench_server`'s load generator), requests per second.

Targets (the issue's): prefix-shared never slower than naive batched at any size; server
batching at least 3x batch size 1.
"""

from __future__ import annotations

import argparse
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

ROWS: list[tuple[str, str, str]] = []  # (section, what, result)


def row(section: str, what: str, result: str) -> None:
    ROWS.append((section, what, result))
    print(f"  [{section}] {what}: {result}", flush=True)


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


def qmodel_on(spec: str, device: str) -> tuple[Any, Any]:
    """(peft model with a random LoRA adapter, tokenizer) on ``spec``."""
    import torch
    from peft import LoraConfig, get_peft_model

    from agentq.models.loading import load_causal_lm
    from agentq.models.tiny import CHATML_TEMPLATE

    model, tok = load_causal_lm(spec, device=device)
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    peft = get_peft_model(model, cfg)
    peft.eval()
    return peft, tok


def naive_batched(model: Any, tok: Any, items: list[Any], max_tokens: int = 65536) -> None:
    """Every candidate's full sequence, both adapter states, in padded batches."""
    import torch

    from agentq.models.scorer import adapter_disabled, encode_items

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


def scoring_section(name: str, spec: str, args: argparse.Namespace, deadline: float) -> None:
    import random

    from bench_scoring import make_action, make_context

    from agentq.models.scorer import score_items

    model, tok = qmodel_on(spec, args.device)
    rng = random.Random(0)
    kw: dict[str, Any] = {"beta": 0.1}
    for length in args.context_tokens:
        if time.time() > deadline:
            row("scoring", f"{name} ctx {length}", "skipped: section time is up")
            continue
        ctxs = [make_context(tok, length, rng) for _ in range(args.contexts_batch)]
        for n in args.n:
            acts = [make_action(tok, ctxs[0], 32, rng) for _ in range(n)]
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


def cache_section(args: argparse.Namespace) -> None:
    import bench_cache

    from agentq.models.prefix_cache import PrefixCache

    ns = argparse.Namespace(
        n=5, max_new_tokens=48, device=args.device, seed=0, quick=False, clients=4
    )
    cache = PrefixCache(args.cache_bytes)
    on = bench_cache.load("smollm2", bench_cache.QMODEL, cache, ns)
    off = bench_cache.load("smollm2", bench_cache.QMODEL, None, ns)
    ws = None
    for env, steps in (("webshop", 6), ("tooluse", 10)):
        a = bench_cache.episode(env, steps, *on, ns)
        b = bench_cache.episode(env, steps, *off, ns, replay=a["actions"])
        ws = ws or a
        row(
            "cache",
            f"{env} episode ({a['steps']} steps)",
            f"prefill tokens {a['prefill']} vs {b['prefill']} "
            f"({b['prefill'] / max(a['prefill'], 1):.2f}x fewer), wall {a['wall_s']:.2f}s vs "
            f"{b['wall_s']:.2f}s ({b['wall_s'] / max(a['wall_s'], 1e-9):.2f}x)",
        )
    assert ws is not None
    acts = list(dict.fromkeys(ws["actions"]))[:5]
    cache.clear()
    r_on = bench_cache.serve_rate(on[1], ws["contexts"], acts, 8)
    r_off = bench_cache.serve_rate(off[1], ws["contexts"], acts, 8)
    row(
        "cache",
        "server, 8 multi-step clients",
        f"{r_on:.1f} vs {r_off:.1f} steps/s ({r_on / r_off:.2f}x)",
    )
    row("cache", "peak bytes / budget", f"{cache.peak_bytes} / {cache.max_bytes}")


def server_section(args: argparse.Namespace) -> None:
    import bench_server

    from agentq.models.scorer import QValueScorer

    scorer = QValueScorer.from_pretrained(
        str(Path(__file__).resolve().parents[1] / "agentq/eval/assets/qmodel_webshop"),
        device=args.device,
        prefix_cache=False,
    )
    ns = argparse.Namespace(contexts=32, clients=64, requests=256)
    for label in ("short", "toy with history"):
        on = bench_server.run_server(scorer, label, ns, max_batch=64, batch_window_ms=5.0)
        off = bench_server.run_server(scorer, label, ns, max_batch=1, batch_window_ms=0.0)
        ratio = on["rps"] / off["rps"]
        row(
            "server",
            f"SmolLM2 Q-model, {label} contexts",
            f"req/s batching {on['rps']:.0f} (mean batch {on['batch']:.1f}) vs batch 1 "
            f"{off['rps']:.0f}: {ratio:.2f}x [{'ok' if ratio >= 3 else 'BELOW 3x'}]",
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=450.0, help="Whole run, seconds.")
    ap.add_argument("--context-tokens", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--n", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--contexts-batch", type=int, default=8)
    ap.add_argument("--cache-bytes", default="4GiB")
    ap.add_argument("--skip", nargs="*", default=[], help="scoring, large, cache, server")
    args = ap.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device (gpu_suite needs a GPU)", file=sys.stderr)
        sys.exit(2)
    gpu = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 0
    start = time.time()
    shares = {"scoring": 0.2, "large": 0.25, "cache": 0.35, "server": 0.2}
    with tempfile.TemporaryDirectory():
        plan: list[tuple[str, Any]] = []
        if "scoring" not in args.skip:
            plan.append(("scoring", lambda d: scoring_section("SmolLM2-135M", "smollm2", args, d)))
        if "large" not in args.skip:
            big = largest_local_checkpoint(gpu)
            if big is None:
                row("scoring", "largest local checkpoint", "none found in the HF cache")
            else:
                plan.append(
                    ("large", lambda d, b=big: scoring_section(b.parts[-3], str(b), args, d))
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
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"\nagentq GPU suite on {gpu_name}, {time.time() - start:.0f} s\n")
    print("| section | measurement | result |")
    print("|---|---|---|")
    for section, what, result in ROWS:
        print(f"| {section} | {what} | {result} |")


if __name__ == "__main__":
    main()
