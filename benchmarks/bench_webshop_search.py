"""WebShop search step time: the shipped catalogue vs a generated 50,000-product catalogue.

Runs the same ``search[...]`` actions (the expert queries of the shipped goals) through
``WebShopEnv.step`` on both catalogues and prints the median step time of each and their ratio.
BM25 (bm25s, sparse) should grow far slower than the catalogue.

    OMP_NUM_THREADS=1 python benchmarks/bench_webshop_search.py [--products 50000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from agentq.envs.webshop import WebShopEnv
from agentq.envs.webshop.expert import expert_query
from agentq.envs.webshop.generate import generate_catalogue, make_instruction
from agentq.envs.webshop.loaders import process_product


def write_catalogue(directory: Path, n_products: int, seed: int = 1) -> float:
    """Write an ``n_products`` catalogue in the official formats; returns the seconds it took."""
    t0 = time.perf_counter()
    products, attributes, reviews = generate_catalogue(n_products, seed=seed)
    rng = random.Random(seed)
    human = {}
    for raw in products[:100]:
        p = process_product(raw, attributes)
        attrs = p["Attributes"][:2]
        opts = [(k, v[0]) for k, v in p["options"].items()]
        human[p["asin"]] = [
            {
                "instruction": make_instruction(p["query"], attrs, opts, rng),
                "instruction_attributes": attrs,
                "instruction_options": [v for _, v in opts],
            }
        ]
    (directory / "items_shuffle.json").write_text(json.dumps(products))
    (directory / "items_ins_v2.json").write_text(json.dumps(attributes))
    (directory / "items_human_ins.json").write_text(json.dumps(human))
    (directory / "reviews.json").write_text(json.dumps(reviews))
    return time.perf_counter() - t0


def median_search_ms(env: WebShopEnv, queries: list[str], repeats: int) -> float:
    """Median wall time of one ``search[...]`` step (reset excluded), in milliseconds."""
    task = env.tasks("test")[0]
    times = []
    for _ in range(repeats):
        for q in queries:
            env.reset(task)
            t0 = time.perf_counter()
            env.step(f"search[{q}]")
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    """Run the benchmark and print both medians and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--products", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    small = WebShopEnv()
    queries = [expert_query(g["instruction_text"]) for g in small.data.goals[: args.queries]]
    with tempfile.TemporaryDirectory() as tmp:
        gen_s = write_catalogue(Path(tmp), args.products)
        t0 = time.perf_counter()
        large = WebShopEnv(data=tmp)
        load_s = time.perf_counter() - t0
    n_small, n_large = len(small.data.products), len(large.data.products)
    # warm both once, then measure
    median_search_ms(small, queries[:5], 1)
    median_search_ms(large, queries[:5], 1)
    ms_small = median_search_ms(small, queries, args.repeats)
    ms_large = median_search_ms(large, queries, args.repeats)
    print(
        f"catalogue sizes: shipped {n_small} products, generated {n_large} products ({n_large / n_small:.0f}x)"
    )
    print(f"generated catalogue written in {gen_s:.1f} s, loaded + BM25-indexed in {load_s:.1f} s")
    print(f"median search[...] step, shipped ({n_small}):   {ms_small:.3f} ms")
    print(f"median search[...] step, generated ({n_large}): {ms_large:.3f} ms")
    print(
        f"ratio large/small: {ms_large / ms_small:.2f}x for {n_large / n_small:.0f}x the products"
    )


if __name__ == "__main__":
    main()
