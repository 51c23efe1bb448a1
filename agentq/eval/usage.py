"""Prefix-cache use of an evaluation's models, per method and per run.

The runner reads the ``stats()`` (:class:`~agentq.protocols.HasStats`) of the models it holds
(sampling and greedy proposers, the scorers) before and after each method and the whole run,
and reports the difference: lookups, hits and hit rate, prompt tokens reused from the cache and
computed, candidate tokens scored, tokens generated, and the caches' bytes, peak bytes and
budget. Methods run one after the other, so the difference around a method is that method's
use (episodes skipped by ``--resume`` are not counted). A model without ``stats()`` (the
``random`` policy, a rule-based scorer) adds nothing; a run whose models report nothing (or
whose models live on Ray workers) has no cache statistics (None). A remote scorer's stats are
its server's, shared with any other client of that server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from agentq.protocols import HasStats

COUNTERS = (
    "lookups",
    "hits",
    "tokens_reused",
    "tokens_computed",
    "candidate_tokens",
    "generated_tokens",
)
"""Counters summed over the models and differenced around a method."""

_CACHE_SIZES = ("bytes", "peak_bytes", "budget_bytes")


def snapshot(models: Iterable[object]) -> dict[str, Any] | None:
    """The summed counters of the distinct models that report prefix-cache use, and their
    distinct caches' sizes; None when none does.

    A model whose ``stats()`` fails or has none of :data:`COUNTERS` is skipped. Caches shared by
    several models (the process-wide one) are counted once: two models report one cache with
    the same figures.
    """
    seen: set[int] = set()
    counters = dict.fromkeys(COUNTERS, 0)
    caches: dict[str, dict[str, Any]] = {}
    reporting = 0
    for m in models:
        if m is None or id(m) in seen or not isinstance(m, HasStats):
            continue
        seen.add(id(m))
        try:
            st = m.stats()
        except Exception:  # a model's statistics never fail an evaluation
            continue
        if not isinstance(st, dict) or not any(k in st for k in COUNTERS):
            continue
        reporting += 1
        for k in COUNTERS:
            v = st.get(k)
            if isinstance(v, (int, float)):
                counters[k] += int(v)
        cache = st.get("cache")
        if isinstance(cache, dict):
            caches[json.dumps(cache, sort_keys=True, default=str)] = cache
    if not reporting:
        return None
    sizes = {k: sum(int(c.get(k) or 0) for c in caches.values()) for k in _CACHE_SIZES}
    return {"models": reporting, "caches": len(caches), **counters, **sizes}


def difference(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """What was used between two :func:`snapshot` s: counters differenced, with ``hit_rate``
    (hits per lookup) and ``reuse_rate`` (share of prompt tokens read from the cache); cache
    sizes as at ``after`` (``peak_bytes`` is the caches' peak since they were created)."""
    if after is None:
        return {}
    base = before or {}
    d: dict[str, Any] = {k: int(after[k]) - int(base.get(k, 0)) for k in COUNTERS}
    d["misses"] = d["lookups"] - d["hits"]
    d["hit_rate"] = d["hits"] / d["lookups"] if d["lookups"] else 0.0
    prompt = d["tokens_reused"] + d["tokens_computed"]
    d["reuse_rate"] = d["tokens_reused"] / prompt if prompt else 0.0
    for k in ("models", "caches", *_CACHE_SIZES):
        d[k] = after[k]
    return d


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def summary_line(run: dict[str, Any] | None, per_method: dict[str, Any] | None = None) -> str:
    """One markdown line: the run's hit rate, tokens reused and computed, cache bytes and peak,
    and each method's hit rate; ``""`` when the run has no cache statistics."""
    if not run:
        return ""
    line = (
        f"Prefix cache: hit rate {100 * run['hit_rate']:.1f}% ({run['hits']}/{run['lookups']} "
        f"lookups), {run['tokens_reused']} prompt tokens reused and {run['tokens_computed']} "
        f"computed ({100 * run['reuse_rate']:.1f}% reused); cache {_size(run['bytes'])} at the "
        f"end, peak {_size(run['peak_bytes'])} of {_size(run['budget_bytes'])}."
    )
    rates = [
        f"{name} {100 * d['hit_rate']:.0f}% ({d['tokens_reused']} reused)"
        for name, d in (per_method or {}).items()
        if d and d.get("lookups")
    ]
    if rates:
        line += " Per method: " + ", ".join(rates) + "."
    return line
