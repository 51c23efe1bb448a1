"""The prefix (KV) cache, cached against uncached, side by side in one run.

Three measurements, each run twice on the same models (prefix cache on, then off):

1. **WebShop**: one real episode (``--webshop-steps``, default 6) of best-of-N: SmolLM2 as the
   constrained policy proposes N actions from ``valid_actions()``, the Q-model on the same base
   (the shipped ``agentq/eval/assets/qmodel_webshop``) scores them adapter on and off, the best
   is executed. Run twice (``--webshop-policy-max-length full,qmodel``): with the policy
   seeing the model's whole window (the row ``webshop``, whose contexts the server replays),
   and with the policy given the Q-model's context budget (its ``max_length``, 512), as
   ``make demo`` and ``make eval-webshop`` run it (the row ``webshop@512``). The two follow
   different actions, so their figures are not comparable with each other, only cached
   against uncached within a row.
2. **Tool use**: one episode of the tool-use environment (``--tooluse-steps``, default 10; free
   generation, then Q-scoring; an episode the agent finishes earlier reports its own steps).
   The policy sees its whole window, as the tool-use runs of ``docs/eval.md`` run it.
3. **Server**: ``agentq serve`` (uvicorn in a thread) with the same Q-model, and ``--clients``
   concurrent multi-step clients that each replay the WebShop episode's contexts step by step
   (every request extends the previous one's context; each client's task is marked as its
   own, :func:`agent_context`, so the clients share the system prompt only; they open their
   connections, then begin together): steps per second. Measured
   ``--server-rounds`` times (default 5), cached and uncached rounds alternating, each round
   on an empty cache; the median of each is printed, the ratio of each cached round to the
   uncached round after it (median and range), and every round with the server's mean
   batch size (one round is short, and on 2 cores a round's rate depends on whether the
   clients' requests happen to arrive together and are batched).

Printed: prefill tokens computed (prompt tokens run through a model, policy + Q-model on and
off), wall seconds per episode, the ratios, the server's step rate, and the cache's peak bytes
against its budget. Both runs of an episode follow the same actions: the cached run records
its actions and the uncached run replays them, so both score the same contexts.

``--quick`` replaces SmolLM2 and the shipped Q-model by a random tiny Llama with a random
adapter and runs 2-3 steps: a check that the script works, not a measurement.

Run: ``python benchmarks/bench_cache.py [--n 5 --cache-bytes 512MiB --clients 4] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
QMODEL = ROOT / "agentq" / "eval" / "assets" / "qmodel_webshop"


def build(args: argparse.Namespace, tmp: Path) -> tuple[Any, Any]:
    """(policy spec or directory, Q-model directory)."""
    if not args.quick:
        return "smollm2", QMODEL
    from agentq.models.tiny import save_tiny_model, save_tiny_qmodel

    base = save_tiny_model(tmp / "base", hidden_size=32, num_layers=2)
    return str(base), save_tiny_qmodel(tmp / "q", base, layers=[1])  # lower layer shared


def load(
    policy: str,
    qdir: Path,
    cache: Any,
    args: argparse.Namespace,
    stop: list[str] | None = None,
) -> tuple[Any, Any]:
    """(policy proposer, Q-value scorer) on ``cache`` (None: caching off); ``stop`` ends free
    generations (default a blank line)."""
    from agentq.models.loading import load_causal_lm
    from agentq.models.proposer import LocalProposer
    from agentq.models.scorer import QValueScorer

    model, tok = load_causal_lm(policy, device=args.device, cache=True)
    opts: dict[str, Any] = {"prefix_cache": cache if cache is not None else False}
    prop = LocalProposer(
        model,
        tok,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        stop=["\n\n"] if stop is None else stop,
        **opts,
    )
    scorer = QValueScorer.from_pretrained(str(qdir), device=args.device, **opts)
    return prop, scorer


def prefill(prop: Any, scorer: Any) -> int:
    return int(prop.cache_stats.tokens_computed + scorer.cache_stats.tokens_computed)


def episode(
    env_name: str,
    steps: int,
    prop: Any,
    scorer: Any,
    args: argparse.Namespace,
    replay: list[str] | None = None,
    env: Any = None,
) -> dict[str, Any]:
    """One best-of-N episode; ``replay`` forces the executed actions (the other run's).
    ``env`` (an environment object) replaces ``envs.make(env_name)``."""
    from agentq.render import advance_context

    if env is None:
        import agentq.envs as envs

        env = envs.make(env_name)
    task = list(env.tasks("test"))[0]
    ctx = list(env.reset(task))
    chosen: list[str] = []
    contexts: list[list[dict[str, str]]] = []
    before = prefill(prop, scorer)
    t0 = time.perf_counter()
    for i in range(steps):
        valid = env.valid_actions()
        cands = prop.propose(ctx, args.n, valid_actions=valid)
        texts = list(dict.fromkeys(c.text for c in cands))
        scores = scorer.score(ctx, texts)
        contexts.append([*ctx])
        best = texts[max(range(len(texts)), key=lambda k: scores[k])]
        if replay is not None:
            best = replay[i] if i < len(replay) else best
        chosen.append(best)
        obs, _reward, done, _info = env.step(best)
        ctx = advance_context(ctx, best, obs)
        if done or (replay is not None and i + 1 >= len(replay)):
            break
    return {
        "steps": len(chosen),
        "wall_s": time.perf_counter() - t0,
        "prefill": prefill(prop, scorer) - before,
        "actions": chosen,
        "contexts": contexts,
    }


def agent_context(context: list[dict[str, str]], k: int) -> list[dict[str, str]]:
    """``context`` as agent ``k``'s own: its task (the first user turn) is marked as agent
    k's, so agents share the system prompt, as several agents of one application do, and
    nothing after it. The context keeps its shape, so truncation drops the same turns."""
    out = [dict(m) for m in context]
    first = next(i for i, m in enumerate(out) if m["role"] == "user")
    out[first]["content"] = f"(agent {k}) " + out[first]["content"]
    return out


def serve_rate(
    scorer: Any, contexts: list[Any], actions: list[str], clients: int
) -> tuple[float, float]:
    """(steps/s, mean batch size) of ``clients`` concurrent clients, each replaying
    ``contexts`` in order."""
    from agentq.integrations.server import BackgroundServer, RemoteScorer, create_app

    done = []
    start = threading.Barrier(clients, timeout=120)  # the agents begin together
    with BackgroundServer(create_app(scorer), log_level="warning") as srv:

        def client(k: int) -> None:
            r = RemoteScorer(srv.url)
            try:
                r.health()  # its connection open, as a running agent's is
                start.wait()
                for ctx in contexts:
                    r.score(agent_context(ctx, k), actions)
                    done.append(1)
            finally:
                r.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        probe = RemoteScorer(srv.url)
        try:
            batch = float(probe.metrics()["batch_size"]["mean"] or 0.0)
        finally:
            probe.close()
    return len(done) / wall, batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="Candidates per step.")
    ap.add_argument("--webshop-steps", type=int, default=6)
    ap.add_argument("--tooluse-steps", type=int, default=10)
    ap.add_argument("--clients", type=int, default=4, help="Concurrent server clients.")
    ap.add_argument("--server-rounds", type=int, default=5, help="Server rounds (median).")
    ap.add_argument(
        "--webshop-policy-max-length",
        default="full,qmodel",
        help="WebShop episodes, one per policy context budget: full (the model's window), "
        "qmodel (the Q-model's max_length) or a number of tokens, comma-separated.",
    )
    ap.add_argument("--cache-bytes", default="512MiB", help="Prefix cache budget.")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-tooluse", action="store_true")
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--quick", action="store_true", help="Tiny random models, 2-3 steps.")
    args = ap.parse_args()
    if args.quick:
        args.webshop_steps, args.tooluse_steps = min(args.webshop_steps, 3), 2
        args.n, args.max_new_tokens, args.clients, args.server_rounds = 3, 8, 2, 1
    from agentq.models.prefix_cache import PrefixCache, parse_cache_bytes

    budget = parse_cache_bytes(args.cache_bytes)
    rows: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        policy, qdir = build(args, Path(tmp))
        cache = PrefixCache(budget)
        on = load(policy, qdir, cache, args)
        off = load(policy, qdir, None, args)
        envs_to_run: list[tuple[str, str, int, int | None]] = []
        full = on[0].max_length
        for spec in args.webshop_policy_max_length.split(","):
            if spec == "full":
                envs_to_run.append(("webshop", "webshop", args.webshop_steps, None))
            else:
                room = on[1].max_length if spec == "qmodel" else int(spec)
                label = f"webshop@{room}" if room else "webshop"
                envs_to_run.append((label, "webshop", args.webshop_steps, room))
        if not args.skip_tooluse:
            envs_to_run.append(("tooluse", "tooluse", args.tooluse_steps, None))
        ws_contexts: list[Any] = []
        ws_actions: list[str] = []
        for label, name, steps, room in envs_to_run:
            on[0].max_length = off[0].max_length = room or full
            cache.clear()  # each episode starts on an empty cache
            a = episode(name, steps, *on, args)
            b = episode(name, steps, *off, args, replay=a["actions"])
            rows.append((label, a, b))
            if name == "webshop" and not ws_contexts:  # the first WebShop episode's
                ws_contexts = a["contexts"]
                ws_actions = list(dict.fromkeys(a["actions"]))[: args.n] or ["click[back]"]
        print(f"\nprefix cache: budget {budget} B, peak {cache.peak_bytes} B", flush=True)
        print(
            "| episode | steps | prefill tokens cached | uncached | ratio "
            "| wall s cached | uncached | ratio |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, a, b in rows:
            print(
                f"| {name} | {a['steps']}/{b['steps']} | {a['prefill']} | {b['prefill']} | "
                f"{b['prefill'] / max(a['prefill'], 1):.2f}x | {a['wall_s']:.2f} | "
                f"{b['wall_s']:.2f} | {b['wall_s'] / max(a['wall_s'], 1e-9):.2f}x |"
            )
        qs = on[1].cache_stats
        print(
            f"cached Q-model, all episodes: {qs.upper_tokens} prompt and {qs.upper_candidates} "
            f"candidate tokens ran in its adapted layers only (the {on[1].lower_layers} layers "
            "below the adapter were the base model's)"
        )
        if not args.skip_server and ws_contexts:
            # per round: ((cached steps/s, batch), (uncached steps/s, batch))
            rounds_run = []
            for _ in range(args.server_rounds):
                cache.clear()
                cached = serve_rate(on[1], ws_contexts, ws_actions, args.clients)
                uncached = serve_rate(off[1], ws_contexts, ws_actions, args.clients)
                rounds_run.append((cached, uncached))
            r_on = statistics.median(a for (a, _), _ in rounds_run)
            r_off = statistics.median(b for _, (b, _) in rounds_run)
            rounds = ", ".join(
                f"{a:.2f}/{b:.2f} (batch {x:.1f}/{y:.1f})" for (a, x), (b, y) in rounds_run
            )
            paired = [a / b for (a, _), (b, _) in rounds_run]
            print(
                f"\nserver, {args.clients} multi-step clients x {len(ws_contexts)} steps, "
                f"median of {args.server_rounds} rounds: "
                f"{r_on:.2f} steps/s cached, {r_off:.2f} uncached ({r_on / r_off:.2f}x); "
                f"each round against the uncached round after it: median "
                f"{statistics.median(paired):.2f}x, {min(paired):.2f}x-{max(paired):.2f}x; "
                f"rounds cached/uncached: {rounds}"
            )
        print(
            f"peak cache bytes {cache.peak_bytes} <= budget {budget}: {cache.peak_bytes <= budget}"
        )
        if args.quick:
            print("(--quick: tiny random models; these numbers are a smoke test, not results)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
