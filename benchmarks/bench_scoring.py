"""Prefix-shared vs naive Q-value scoring: candidates scored per second and peak memory.

Same model (SmolLM2-135M-Instruct + a LoRA adapter, so the policy and the reference differ),
same inputs, measured side by side in one run: contexts of 1024 and 2048 tokens, N = 8 and 16
candidates of 32 action tokens each (the assistant turn including its end-of-turn tokens).

- prefix-shared: :func:`agentq.models.scorer.score_items` (one prefix pass per model, then
  the N candidates in one batched pass over the expanded KV cache);
- naive: each candidate's full sequence through both models (``naive=True``).

A naive candidate costs the same whatever N is (it is computed on its own), so on the CPU the
naive rate is measured on ``--naive-candidates`` candidates per context length (default 2)
to keep the run short; on CUDA all N are run. Peak memory: CUDA peak allocated bytes, or on
the CPU the peak resident set size sampled every 2 ms, both above the level before the call.
Runs unchanged on CUDA when a GPU is present.

    python benchmarks/bench_scoring.py [--model smollm2] [--contexts 1024 2048] [--n 8 16]
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from typing import Any

WORDS = (
    "the agent opened a door and saw a long corridor with blue walls red lamps and a small "
    "table where a map of the building lay next to an old key and several notes about rooms"
).split()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory above the starting level during a ``with`` block (CUDA or CPU RSS)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = _rss_bytes()
            self._stop = threading.Event()
            self._max = self.start

            def sample() -> None:
                while not self._stop.is_set():
                    self._max = max(self._max, _rss_bytes())
                    time.sleep(0.002)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, _rss_bytes()) - self.start


def make_context(tok: Any, target: int, rng: random.Random) -> Any:
    """A chat context whose rendered prompt is exactly ``target`` tokens (or just under)."""
    from agentq.render import tokenize_for_scoring

    sys_msg: Any = {"role": "system", "content": "You are an agent. Reply with one action."}
    words: list[str] = []
    while True:
        words += [rng.choice(WORDS) for _ in range(64)]
        ctx = [sys_msg, {"role": "user", "content": " ".join(words)}]
        n = len(tokenize_for_scoring(tok, ctx, "x")[0])
        if n >= target:
            break
    lo, hi = 0, len(words)
    while lo < hi:  # longest prefix of words that fits
        mid = (lo + hi + 1) // 2
        ctx = [sys_msg, {"role": "user", "content": " ".join(words[:mid])}]
        if len(tokenize_for_scoring(tok, ctx, "x")[0]) <= target:
            lo = mid
        else:
            hi = mid - 1
    return [sys_msg, {"role": "user", "content": " ".join(words[:lo])}]


def make_action(tok: Any, ctx: Any, tokens: int, rng: random.Random) -> str:
    """An action whose rendered assistant turn has ``tokens`` tokens (end-of-turn included)."""
    from agentq.render import tokenize_for_scoring

    for _ in range(200):
        words = [rng.choice(WORDS)]
        while len(tokenize_for_scoring(tok, ctx, " ".join(words))[1]) < tokens:
            words.append(rng.choice(WORDS))
        text = " ".join(words)
        if len(tokenize_for_scoring(tok, ctx, text)[1]) == tokens:
            return text
    raise RuntimeError(f"could not build an action of exactly {tokens} tokens")


def _worker(opts: dict[str, Any], ctx: Any, acts: list[str], naive: bool) -> dict[str, Any]:
    """One measurement in a fresh process: load, warm up, time ``reps`` runs, record the peak."""
    import torch
    from peft import LoraConfig, get_peft_model

    from agentq.models.loading import load_causal_lm
    from agentq.models.scorer import score_items

    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    base, tok = load_causal_lm(opts["model"], device=opts["device"])
    device = str(next(base.parameters()).device)
    torch.manual_seed(opts["seed"])  # the same adapter in every worker
    lora = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, lora).eval()
    warm: Any = [{"role": "user", "content": "warm up"}]
    score_items(model, tok, [(warm, ["a b", "c d"])], beta=0.1, naive=naive)
    best, peak, scores = float("inf"), 0, None
    for _ in range(opts["reps"]):
        with PeakMemory(device) as pm:
            t = time.perf_counter()
            scores = score_items(model, tok, [(ctx, acts)], beta=0.1, naive=naive)[0]
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
        best, peak = min(best, dt), max(peak, pm.peak)
    return {
        "seconds": best,
        "peak": peak,
        "scores": scores,
        "candidates": len(acts),
        "device": device,
        "dtype": str(next(model.parameters()).dtype),
        "threads": torch.get_num_threads(),
    }


def measure(args: Any, ctx: Any, acts: list[str], naive: bool) -> dict[str, Any]:
    """Run :func:`_worker` in a fresh spawned process (clean memory peaks, no allocator reuse).

    Naive scoring on the CPU runs ``--naive-candidates`` (default 2) of the candidates.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if naive and args.naive_candidates is None:
        import torch

        on_cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith(
            "cuda"
        )
        acts = acts if on_cuda else acts[:2]
    opts = {k: getattr(args, k) for k in ("model", "device", "threads", "seed", "reps")}
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_worker, opts, ctx, acts, naive).result()


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="MODEL spec of the base model")
    ap.add_argument("--contexts", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--n", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--action-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions (best is kept)")
    ap.add_argument(
        "--naive-candidates",
        type=int,
        default=None,
        help="candidates run naively per context length (default: 2 on CPU, all on CUDA)",
    )
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from agentq.models.loading import load_tokenizer, resolve_model_path

    spec = resolve_model_path(args.model)  # converts smollm2 once, before the workers start
    tok = load_tokenizer(spec)
    rng = random.Random(args.seed)
    rows = []
    device = dtype = threads = "?"
    for length in args.contexts:
        ctx = make_context(tok, length, rng)
        n_max = max(args.n)
        acts = [make_action(tok, ctx, args.action_tokens, rng) for _ in range(n_max)]
        naive = measure(args, ctx, acts[: args.naive_candidates or n_max], naive=True)
        device, dtype, threads = naive["device"], naive["dtype"], naive["threads"]
        k = naive["candidates"]
        naive_rate = k / naive["seconds"]
        for n in args.n:
            shared = measure(args, ctx, acts[:n], naive=False)
            diff = max(
                abs(a - b) for a, b in zip(shared["scores"][:k], naive["scores"], strict=True)
            )
            rows.append(
                (
                    length,
                    n,
                    n / shared["seconds"],
                    naive_rate,
                    k,
                    shared["peak"],
                    naive["peak"],
                    diff,
                )
            )
            print(
                f"  context {length} N={n}: shared {shared['seconds']:.2f}s, "
                f"naive {k} candidates {naive['seconds']:.2f}s",
                flush=True,
            )

    print()
    print(
        "| context | N | prefix-shared cand/s | naive cand/s (measured on k) | speedup | "
        "peak MiB shared | peak MiB naive | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for length, n, sr, nr, k, sp, npk, diff in rows:
        print(
            f"| {length} | {n} | {sr:.2f} | {nr:.3f} (k={k}) | {sr / nr:.1f}x | "
            f"{sp / 2**20:.0f} | {npk / 2**20:.0f} | {diff:.1e} |"
        )
    print(
        f"\nmodel {args.model} on {device} ({dtype}, torch threads {threads}); "
        f"{args.action_tokens}-token actions; best of {args.reps} rep(s); each measurement in "
        "a fresh process; peak = memory above the level before the call"
    )


if __name__ == "__main__":
    main()
