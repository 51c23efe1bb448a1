"""``agentq serve`` throughput: dynamic batching vs batching off, same model, one run.

64 concurrent clients (a separate load-generator process, httpx) send scoring requests with
5 candidate actions each; the same Q-model is served twice on 127.0.0.1 (uvicorn in a thread
of this process), once with dynamic batching (``--max-batch 64 --batch-window-ms 5``) and
once with batching off (``--max-batch 1``). Two kinds of context: short one-message contexts
(~70 tokens) and toy-corridor contexts with a few steps of history (~300 tokens). Printed per
kind: requests/s, actions/s, client-side latency p50/p99, the server's mean batch size, the
throughput ratio (the issue asks for >= 3x), and the same scorer called without HTTP (one
``score_batch`` of a mean-batch worth of items vs that many ``score`` calls, and the
tokenisation time alone), which bounds what batching can save on this machine.

A last line prices what vLLM's prompt-logprob path loses: vLLM skips its prefix cache for
requests with ``prompt_logprobs``, so each candidate recomputes the whole context. The local
scorer's prefix-shared pass is timed against its full-sequence-per-candidate pass
(``QValueScorer.score_naive``) on the same model: a CPU proxy for that cost, not a vLLM
measurement.

The model is a random tiny Llama (byte-level tokenizer, ``--layers`` layers of width
``--hidden``) with a random LoRA adapter: small, but every request is a real forward pass.

Run: ``python benchmarks/bench_server.py [--requests 192 --clients 64 --hidden 64 --layers 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
from agentq.envs.toy import ToyEnv  # noqa: E402
from agentq.integrations.server import BackgroundServer, ServerConfig, create_app  # noqa: E402

from agentq.render import advance_context, tokenize_for_scoring  # noqa: E402

ACTIONS = ["open[A]", "open[B]", "open[C]", "I will try open[A]", "Let me open[B] now"]


def short_workload(n_contexts: int) -> list[list[dict[str, str]]]:
    """Distinct one-message contexts of about 50 byte tokens."""
    return [
        [{"role": "user", "content": f"Task {i}: you are in room 1 of 3. Doors: A, B, C."}]
        for i in range(n_contexts)
    ]


def workload(n_contexts: int) -> list[list[dict[str, str]]]:
    """Distinct contexts: toy tasks after 0-2 steps (about 250-450 byte tokens each)."""
    env = ToyEnv(rooms=3)
    out = []
    for i in range(n_contexts):
        ctx = env.reset(f"toy-train-{i}")
        for k in range(i % 3):
            action = f"open[{'ABC'[(i + k) % 3]}]"
            obs, _, _, _ = env.step(action)
            ctx = advance_context(ctx, action, obs)
        out.append(ctx)
    return out


def n_tokens(tokenizer, context) -> int:
    """Prompt tokens of ``context`` under the chat template."""
    ids = tokenizer.apply_chat_template(context, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def pct(vals: list[float], q: float) -> float:
    s = sorted(vals)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


async def load(url: str, contexts: list, clients: int, requests: int) -> tuple[float, list[float]]:
    """``requests`` requests from ``clients`` concurrent clients; (wall seconds, latencies)."""
    latencies: list[float] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker() -> None:
            for i in counter:
                body = {"context": contexts[i % len(contexts)], "actions": ACTIONS}
                t = time.perf_counter()
                r = await client.post(url + "/v1/score", json=body)
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0, latencies


WORKLOADS = {"short": short_workload, "toy with history": workload}


def client_main(url: str, name: str, n_contexts: int, clients: int, requests: int) -> None:
    """The load generator (a separate process, so it takes no CPU from the server's GIL)."""
    contexts = WORKLOADS[name](n_contexts)
    asyncio.run(load(url, contexts, clients, 16))  # warm-up
    wall, lat = asyncio.run(load(url, contexts, clients, requests))
    print(json.dumps({"wall": wall, "latencies": lat}))


def run_server(scorer, name: str, args: argparse.Namespace, **cfg) -> dict:
    """Serve ``scorer`` with ``cfg`` in a thread; drive it from a client process."""
    app = create_app(scorer, ServerConfig(**cfg))
    with BackgroundServer(app) as srv:
        cmd = [sys.executable, __file__, "--client", srv.url, "--workload", name]
        cmd += ["--contexts", str(args.contexts), "--clients", str(args.clients)]
        cmd += ["--requests", str(args.requests)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        m = httpx.get(srv.url + "/metrics").json()
    res = json.loads(out.strip().splitlines()[-1])
    wall, lat = res["wall"], res["latencies"]
    return {
        "rps": args.requests / wall,
        "aps": args.requests * len(ACTIONS) / wall,
        "p50": pct(lat, 50) * 1000,
        "p99": pct(lat, 99) * 1000,
        "batch": m["batch_size"]["mean"],
        "wall": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=192)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--contexts", type=int, default=32)
    ap.add_argument("--prefix-reps", type=int, default=10)
    ap.add_argument("--device", default="cpu", help="device of the served Q-model (cpu, cuda)")
    ap.add_argument(
        "--window-ms", type=float, default=5.0, help="batch window of the batched server"
    )
    ap.add_argument("--client", default="", help=argparse.SUPPRESS)
    ap.add_argument("--workload", default="short", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        client_main(args.client, args.workload, args.contexts, args.clients, args.requests)
        return

    import torch

    from agentq.models.scorer import QValueScorer
    from agentq.models.tiny import save_tiny_model, save_tiny_qmodel

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp:
        base = save_tiny_model(
            Path(tmp) / "base",
            hidden_size=args.hidden,
            num_layers=args.layers,
            num_heads=8,
            num_kv_heads=4,
            intermediate_size=2 * args.hidden,
        )
        qdir = save_tiny_qmodel(Path(tmp) / "q", base)
        # the prefix cache off: this measures batching (bench_cache.py measures the cache)
        scorer = QValueScorer.from_pretrained(str(qdir), device=args.device, prefix_cache=False)
    print(
        f"model: tiny Llama, {args.layers} layers x {args.hidden} wide, random LoRA, {args.device}; "
        f"torch threads {torch.get_num_threads()}; {len(ACTIONS)} actions/request; "
        f"{args.clients} concurrent clients, {args.requests} requests per run"
    )
    print(
        f"{'contexts':<32}{'server':<20}{'req/s':>8}{'actions/s':>11}{'p50 ms':>10}{'p99 ms':>10}{'mean batch':>12}"
    )
    for name, make in WORKLOADS.items():
        ntok = statistics.mean(n_tokens(scorer.tokenizer, c) for c in make(args.contexts))
        label = f"{name} (~{ntok:.0f} tokens)"
        runs = {
            "dynamic batching": run_server(
                scorer, name, args, max_batch=64, batch_window_ms=args.window_ms
            ),
            "batching off (1)": run_server(scorer, name, args, max_batch=1, batch_window_ms=0),
        }
        for server, r in runs.items():
            print(
                f"{label:<32}{server:<20}{r['rps']:>8.1f}{r['aps']:>11.1f}{r['p50']:>10.0f}"
                f"{r['p99']:>10.0f}{r['batch']:>12.1f}"
            )
        ratio = runs["dynamic batching"]["rps"] / runs["batching off (1)"]["rps"]
        print(f"{label:<32}throughput ratio batching/off: {ratio:.2f}x (asked: >= 3x)")
        # the same scorer without HTTP: how much can batching save in the model call itself?
        k = max(1, round(runs["dynamic batching"]["batch"]))
        items = [(c, ACTIONS) for c in make(args.contexts)][:k]
        t = time.perf_counter()
        for c, a in items:
            scorer.score(c, a)
        t_single = time.perf_counter() - t
        t = time.perf_counter()
        scorer.score_batch(items)
        t_batch = time.perf_counter() - t
        t = time.perf_counter()
        for c, a in items:
            for x in a:
                tokenize_for_scoring(scorer.tokenizer, c, x, scorer.max_length)
        t_tok = time.perf_counter() - t
        print(
            f"{label:<32}scorer alone, {k} items (the mean batch): one call {t_batch * 1000:.0f} ms vs "
            f"{k} calls {t_single * 1000:.0f} ms = {t_single / t_batch:.2f}x; tokenisation "
            f"alone {t_tok / k * 1000:.1f} ms per request"
        )

    contexts = workload(args.contexts)
    # -- what a missing prefix cache costs: prefix-shared vs one full sequence per candidate
    ctx = contexts[-1]
    scorer.score(ctx, ACTIONS)
    scorer.score_naive(ctx, ACTIONS)
    t = time.perf_counter()
    for _ in range(args.prefix_reps):
        shared = scorer.score(ctx, ACTIONS)
    t_shared = (time.perf_counter() - t) / args.prefix_reps
    t = time.perf_counter()
    for _ in range(args.prefix_reps):
        naive = scorer.score_naive(ctx, ACTIONS)
    t_naive = (time.perf_counter() - t) / args.prefix_reps
    diff = max(abs(a - b) for a, b in zip(shared, naive, strict=True))
    print(
        f"one request ({len(ACTIONS)} actions, context {n_tokens(scorer.tokenizer, ctx)} tokens): "
        f"prefix-shared {t_shared * 1000:.1f} ms, full recompute per candidate "
        f"(what vLLM does with prompt_logprobs) {t_naive * 1000:.1f} ms: "
        f"{t_naive / t_shared:.2f}x (max score difference {diff:.1e})"
    )


if __name__ == "__main__":
    main()
